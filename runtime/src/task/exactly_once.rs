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

/// The next offset of every partition in a batch: (topic, partition, last offset + 1).
pub fn next_offsets(records: &[Record]) -> Vec<(String, i32, i64)> {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for r in records {
        let entry = next.entry((&r.topic, r.partition)).or_insert(r.offset + 1);
        *entry = (*entry).max(r.offset + 1);
    }
    let mut next: Vec<(String, i32, i64)> = next
        .into_iter()
        .map(|((topic, partition), offset)| (topic.to_owned(), partition, offset))
        .collect();
    next.sort();
    next
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
    /// stopped).
    pub async fn alter(&self, offsets: &[(String, i32, i64)]) -> Result<(), String> {
        self.load()
            .await
            .map_err(|e| format!("{}: {e}", self.table))?;
        self.commit(None, offsets).await
    }

    /// Adds `offsets` to `tx` (a fresh transaction when the plugin wrote nothing) and commits.
    /// When the commit's outcome is unknown (the connection broke), the table says whether it
    /// happened. The error means it did not, or that it cannot be known yet: the caller retries
    /// the batch, checking [`OffsetTable::committed`] first.
    pub async fn commit(
        &self,
        tx: Option<Transaction<'static, Postgres>>,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), String> {
        let mut tx = match tx {
            Some(tx) => tx,
            None => self.pool.begin().await.map_err(|e| e.to_string())?,
        };
        let (topics, partitions, nexts): (Vec<&str>, Vec<i32>, Vec<i64>) = offsets
            .iter()
            .map(|(t, p, o)| (t.as_str(), *p, *o))
            .collect();
        sqlx::query(&format!(
            "INSERT INTO {} (connector, topic, partition, next_offset) \
             SELECT $1, * FROM unnest($2::text[], $3::integer[], $4::bigint[]) \
             ON CONFLICT (connector, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            self.table
        ))
        .bind(&self.connector)
        .bind(&topics)
        .bind(&partitions)
        .bind(&nexts)
        .execute(&mut *tx)
        .await
        .map_err(|e| format!("storing offsets in {}: {e}", self.table))?;
        if let Err(e) = tx.commit().await
            && !self.committed(offsets).await.unwrap_or(false)
        {
            return Err(format!("committing the batch and its offsets: {e}"));
        }
        self.remember(offsets);
        Ok(())
    }

    /// Whether the table already holds `offsets` (or later ones): the batch was committed.
    pub async fn committed(&self, offsets: &[(String, i32, i64)]) -> Result<bool, String> {
        for (topic, partition, next) in offsets {
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
        self.remember(offsets);
        Ok(true)
    }

    fn remember(&self, offsets: &[(String, i32, i64)]) {
        let mut resume = self.resume.lock().expect("resume lock");
        for (topic, partition, next) in offsets {
            resume.insert((topic.clone(), *partition), *next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_offsets_are_one_past_the_last_record_of_each_partition() {
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
        assert_eq!(
            next_offsets(&batch),
            [("a".into(), 0, 8), ("a".into(), 1, 10), ("b".into(), 0, 2)]
        );
    }
}
