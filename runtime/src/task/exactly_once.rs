//! Exactly-once into SQL: the table of consumed offsets a sink commits in the same
//! transaction as its writes, and where the consumer resumes from.

use std::collections::HashMap;

use sqlx::{PgPool, Postgres, Transaction};

use crate::config::ExactlyOnceConfig;
use crate::connector::Record;
use crate::kafka::ResumeOffsets;

/// One connector's rows in the offsets table.
pub struct OffsetTable {
    pool: PgPool,
    database: String,
    /// Quoted, ready for SQL.
    table: String,
    connector: String,
    resume: ResumeOffsets,
}

/// Where a batch lies in one partition: its first offset and the next offset after it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub next: i64,
}

impl Span {
    /// A next offset set from outside (the REST API), whatever the table holds.
    fn set(topic: &str, partition: i32, next: i64) -> Self {
        Span {
            topic: topic.to_owned(),
            partition,
            first: i64::MAX,
            next,
        }
    }
}

/// The span of every partition in a batch, sorted.
pub fn spans(records: &[Record]) -> Vec<Span> {
    let mut spans: HashMap<(&str, i32), (i64, i64)> = HashMap::new();
    for r in records {
        let (first, next) = spans
            .entry((&r.topic, r.partition))
            .or_insert((r.offset, r.offset + 1));
        *first = (*first).min(r.offset);
        *next = (*next).max(r.offset + 1);
    }
    let mut spans: Vec<Span> = spans
        .into_iter()
        .map(|((topic, partition), (first, next))| Span {
            topic: topic.to_owned(),
            partition,
            first,
            next,
        })
        .collect();
    spans.sort();
    spans
}

/// Why the offsets of a batch were not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// It did not happen, or it cannot be known yet: retry the batch, checking
    /// [`OffsetTable::committed`] first.
    #[error("{0}")]
    Failed(String),
    /// The table is past the start of the batch in a partition: another task wrote (some of)
    /// these records. Nothing was committed; the task must stop and resume from the table.
    #[error("{0}")]
    Fenced(String),
}

impl OffsetTable {
    pub fn new(
        pool: PgPool,
        config: &ExactlyOnceConfig,
        connector: &str,
        resume: ResumeOffsets,
    ) -> Self {
        let table = config
            .table
            .split('.')
            .map(|part| format!("\"{part}\""))
            .collect::<Vec<_>>()
            .join(".");
        OffsetTable {
            pool,
            database: config.database.clone(),
            table,
            connector: connector.to_owned(),
            resume,
        }
    }

    /// The database the plugin's writes and the offsets share.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Creates the table if it is missing and loads this connector's offsets as the places to
    /// resume from.
    pub async fn load(&self) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {} (connector text NOT NULL, topic text NOT NULL, \
             partition integer NOT NULL, next_offset bigint NOT NULL, \
             PRIMARY KEY (connector, topic, partition))",
            self.table
        ))
        .execute(&self.pool)
        .await?;
        let rows: Vec<(String, i32, i64)> = sqlx::query_as(&format!(
            "SELECT topic, partition, next_offset FROM {} WHERE connector = $1",
            self.table
        ))
        .bind(&self.connector)
        .fetch_all(&self.pool)
        .await?;
        let mut resume = self.resume.lock().expect("resume lock");
        resume.clear();
        resume.extend(rows.into_iter().map(|(t, p, o)| ((t, p), o)));
        Ok(())
    }

    /// This connector's rows: (topic, partition, next offset). Creates the table if missing.
    pub async fn read(&self) -> Result<Vec<(String, i32, i64)>, sqlx::Error> {
        self.load().await?;
        let resume = self.resume.lock().expect("resume lock");
        let mut rows: Vec<(String, i32, i64)> = resume
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect();
        rows.sort();
        Ok(rows)
    }

    /// Sets the next offset of some partitions (the REST API, while the connector is
    /// stopped), whatever the table held.
    pub async fn alter(&self, offsets: &[(String, i32, i64)]) -> Result<(), String> {
        self.load()
            .await
            .map_err(|e| format!("{}: {e}", self.table))?;
        let spans: Vec<Span> = offsets
            .iter()
            .map(|(topic, partition, next)| Span::set(topic, *partition, *next))
            .collect();
        self.commit(None, &spans).await.map_err(|e| e.to_string())
    }

    /// Adds the batch's `spans` to `tx` (a fresh transaction when the plugin wrote nothing)
    /// and commits. Fenced on the expected value: a partition whose stored next offset is past
    /// the batch's first offset is not moved (never backwards, never over records another
    /// task wrote), and then nothing commits ([`CommitError::Fenced`]). When the commit's
    /// outcome is unknown (the connection broke), the table says whether it happened.
    pub async fn commit(
        &self,
        tx: Option<Transaction<'static, Postgres>>,
        spans: &[Span],
    ) -> Result<(), CommitError> {
        let failed = |e: String| CommitError::Failed(e);
        let mut tx = match tx {
            Some(tx) => tx,
            None => self.pool.begin().await.map_err(|e| failed(e.to_string()))?,
        };
        let topics: Vec<&str> = spans.iter().map(|s| s.topic.as_str()).collect();
        let partitions: Vec<i32> = spans.iter().map(|s| s.partition).collect();
        let firsts: Vec<i64> = spans.iter().map(|s| s.first).collect();
        let nexts: Vec<i64> = spans.iter().map(|s| s.next).collect();
        let stored = sqlx::query(&format!(
            "WITH batch (topic, partition, first_offset, next_offset) AS \
               (SELECT * FROM unnest($2::text[], $3::integer[], $4::bigint[], $5::bigint[])) \
             INSERT INTO {table} AS stored (connector, topic, partition, next_offset) \
             SELECT $1, topic, partition, next_offset FROM batch \
             ON CONFLICT (connector, topic, partition) DO UPDATE SET next_offset = excluded.next_offset \
             WHERE stored.next_offset <= (SELECT first_offset FROM batch \
               WHERE batch.topic = excluded.topic AND batch.partition = excluded.partition)",
            table = self.table
        ))
        .bind(&self.connector)
        .bind(&topics)
        .bind(&partitions)
        .bind(&firsts)
        .bind(&nexts)
        .execute(&mut *tx)
        .await
        .map_err(|e| failed(format!("storing offsets in {}: {e}", self.table)))?;
        if stored.rows_affected() < spans.len() as u64 {
            // Dropping `tx` rolls the batch back.
            return Err(CommitError::Fenced(format!(
                "the offsets table {} is past the start of this batch ({}): another task \
                 wrote these records; nothing of the batch was committed",
                self.table,
                spans
                    .iter()
                    .map(|s| format!(
                        "{} partition {} from offset {}",
                        s.topic, s.partition, s.first
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Err(e) = tx.commit().await
            && !self.committed(spans).await.unwrap_or(false)
        {
            return Err(failed(format!("committing the batch and its offsets: {e}")));
        }
        self.remember(spans);
        Ok(())
    }

    /// Whether the table already holds the batch's spans (or later offsets): it was committed.
    pub async fn committed(&self, spans: &[Span]) -> Result<bool, String> {
        for Span {
            topic,
            partition,
            next,
            ..
        } in spans
        {
            let stored: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT next_offset FROM {} WHERE connector = $1 AND topic = $2 AND partition = $3",
                self.table
            ))
            .bind(&self.connector)
            .bind(topic)
            .bind(partition)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| format!("reading {}: {e}", self.table))?;
            if stored.is_none_or(|stored| stored < *next) {
                return Ok(false);
            }
        }
        self.remember(spans);
        Ok(true)
    }

    fn remember(&self, spans: &[Span]) {
        let mut resume = self.resume.lock().expect("resume lock");
        for span in spans {
            resume.insert((span.topic.clone(), span.partition), span.next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_runs_from_the_first_record_to_one_past_the_last_of_each_partition() {
        let record = |topic: &str, partition, offset| Record {
            topic: topic.into(),
            partition,
            offset,
            timestamp: None,
            key: None,
            value: None,
            headers: vec![],
        };
        let batch = [
            record("a", 0, 5),
            record("a", 1, 9),
            record("a", 0, 7),
            record("b", 0, 1),
        ];
        let span = |topic: &str, partition, first, next| Span {
            topic: topic.into(),
            partition,
            first,
            next,
        };
        assert_eq!(
            spans(&batch),
            [span("a", 0, 5, 8), span("a", 1, 9, 10), span("b", 0, 1, 2)]
        );
    }
}
