//! How a FAILED trace names the records that stopped a task: one line per reason, not one per
//! record, so that 112 records refused for one cause read as one cause.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Record;

/// The offsets of one reason's records, by topic and partition.
type Offsets<'a> = BTreeMap<(&'a str, i32), Vec<i64>>;

/// Records refused for the same reason are grouped, in the order their reasons first appear;
/// each group names its records by topic, partition and offset ranges:
/// `topic t partition 0 offset 5: reason` for one,
/// `112 records at topic t partition 0 offsets 0-111: reason` for many. Groups are joined
/// with `; `.
pub fn describe<'a>(refused: impl IntoIterator<Item = (&'a Record, &'a str)>) -> String {
    let mut groups: Vec<(&str, Offsets<'_>)> = Vec::new();
    for (record, reason) in refused {
        let at = match groups.iter().position(|(r, _)| *r == reason) {
            Some(at) => at,
            None => {
                groups.push((reason, BTreeMap::new()));
                groups.len() - 1
            }
        };
        groups[at]
            .1
            .entry((&record.topic, record.partition))
            .or_default()
            .push(record.offset);
    }
    let mut lines = Vec::with_capacity(groups.len());
    for (reason, partitions) in groups {
        let count: usize = partitions.values().map(Vec::len).sum();
        let mut line = String::new();
        if count > 1 {
            let _ = write!(line, "{count} records at ");
        }
        let places: Vec<String> = partitions
            .into_iter()
            .map(|((topic, partition), mut offsets)| {
                offsets.sort_unstable();
                offsets.dedup();
                let noun = if offsets.len() == 1 {
                    "offset"
                } else {
                    "offsets"
                };
                format!(
                    "topic {topic} partition {partition} {noun} {}",
                    ranges(&offsets)
                )
            })
            .collect();
        let _ = write!(line, "{}: {reason}", places.join(", "));
        lines.push(line);
    }
    lines.join("; ")
}

/// Sorted offsets as ranges: `0-3, 7, 9-12`.
fn ranges(offsets: &[i64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < offsets.len() {
        let start = offsets[i];
        while i + 1 < offsets.len() && offsets[i + 1] == offsets[i] + 1 {
            i += 1;
        }
        parts.push(if offsets[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", offsets[i])
        });
        i += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> Record {
        Record {
            topic: "orders".into(),
            partition,
            offset,
            timestamp: None,
            key: None,
            value: None,
            headers: vec![],
        }
    }

    #[test]
    fn one_record_is_named_as_a_locator_names_it() {
        let r = record(0, 5);
        assert_eq!(
            describe([(&r, "bad amount")]),
            format!("{}: bad amount", r.locator())
        );
    }

    #[test]
    fn records_refused_for_one_reason_are_one_line_with_offset_ranges() {
        let records: Vec<Record> = (0..112)
            .map(|o| record(0, o))
            .chain([record(1, 3), record(1, 4), record(1, 9)])
            .collect();
        let refused = records.iter().map(|r| (r, "column amount is missing"));
        assert_eq!(
            describe(refused),
            "115 records at topic orders partition 0 offsets 0-111, \
             topic orders partition 1 offsets 3-4, 9: column amount is missing"
        );
    }

    #[test]
    fn reasons_keep_the_order_they_first_appear_in() {
        let records: Vec<Record> = (0..4).map(|o| record(0, o)).collect();
        let refused = [
            (&records[0], "b"),
            (&records[1], "a"),
            (&records[2], "b"),
            (&records[3], "a"),
        ];
        assert_eq!(
            describe(refused),
            "2 records at topic orders partition 0 offsets 0, 2: b; \
             2 records at topic orders partition 0 offsets 1, 3: a"
        );
    }
}
