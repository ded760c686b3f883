//! PostgreSQL's `pgoutput` logical replication messages (protocol version 1), as
//! `pg_logical_slot_peek_binary_changes` returns them, one message per row. Pure: bytes in,
//! [`Message`] out; anything malformed is an error naming what and where, never a panic
//! (the bytes come from outside; `runtime/fuzz` has a target for [`parse`]).
//!
//! Layout of each message: <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.

/// A log sequence number: a byte position in the write-ahead log.
pub type Lsn = u64;

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A transaction starts; `final_lsn` is where its commit record is.
    Begin {
        final_lsn: Lsn,
        /// Microseconds since 2000-01-01 (PostgreSQL's epoch).
        commit_time: i64,
        xid: u32,
    },
    /// The transaction ends: `commit_lsn` is its commit record, `end_lsn` just past it.
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    /// A changed row's origin (replication from another server).
    Origin {
        lsn: Lsn,
        name: String,
    },
    /// What a relation id stands for: sent before the first change of the relation in each
    /// decoding session and after its definition changes.
    Relation(Relation),
    /// A type that is not built in, by id.
    Type {
        id: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Tuple,
    },
    /// `old` is the old key (`'K'`, when the key changed) or the whole old row (`'O'`, with
    /// REPLICA IDENTITY FULL), per the table's replica identity; `None` otherwise.
    Update {
        relation: u32,
        old: Option<Tuple>,
        new: Tuple,
    },
    /// `old` is the key (`'K'`) or, with REPLICA IDENTITY FULL, the whole row (`'O'`).
    Delete {
        relation: u32,
        old: Tuple,
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// A message written by `pg_logical_emit_message`.
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Vec<u8>,
    },
}

/// A table as the Relation message describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Part of the replica identity (the key).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// The columns of a row, in the relation's column order.
pub type Tuple = Vec<Datum>;

/// One column of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    Null,
    /// A TOASTed value the change did not touch: the server does not send it.
    UnchangedToast,
    /// The type's text output.
    Text(String),
    /// The type's binary output (only with the `binary` option, which this plugin does not ask
    /// for).
    Binary(Vec<u8>),
}

/// Why bytes are not a pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed pgoutput message: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

/// Parses one message.
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    let mut r = Reader { bytes, at: 0 };
    let tag = r.u8("message type")?;
    let message = match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64("Begin final LSN")?,
            commit_time: r.u64("Begin timestamp")? as i64,
            xid: r.u32("Begin xid")?,
        },
        b'C' => {
            r.u8("Commit flags")?;
            Message::Commit {
                commit_lsn: r.u64("Commit LSN")?,
                end_lsn: r.u64("Commit end LSN")?,
                commit_time: r.u64("Commit timestamp")? as i64,
            }
        }
        b'O' => Message::Origin {
            lsn: r.u64("Origin LSN")?,
            name: r.cstring("Origin name")?,
        },
        b'R' => {
            let id = r.u32("Relation id")?;
            let namespace = r.cstring("Relation namespace")?;
            let name = r.cstring("Relation name")?;
            let replica_identity = r.u8("Relation replica identity")?;
            let count = r.u16("Relation column count")?;
            let mut columns = Vec::with_capacity(usize::from(count).min(r.remaining()));
            for _ in 0..count {
                columns.push(Column {
                    key: r.u8("column flags")? & 1 == 1,
                    name: r.cstring("column name")?,
                    type_oid: r.u32("column type")?,
                    type_modifier: r.u32("column type modifier")? as i32,
                });
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => Message::Type {
            id: r.u32("Type id")?,
            namespace: r.cstring("Type namespace")?,
            name: r.cstring("Type name")?,
        },
        b'I' => {
            let relation = r.u32("Insert relation")?;
            r.expect(b'N', "Insert's new tuple")?;
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32("Update relation")?;
            let (old, new) = match r.u8("Update tuple kind")? {
                b'K' | b'O' => {
                    let old = r.tuple()?;
                    r.expect(b'N', "Update's new tuple")?;
                    (Some(old), r.tuple()?)
                }
                b'N' => (None, r.tuple()?),
                other => return Err(r.error(format!("Update tuple kind {:?}", other as char))),
            };
            Message::Update { relation, old, new }
        }
        b'D' => {
            let relation = r.u32("Delete relation")?;
            match r.u8("Delete tuple kind")? {
                b'K' | b'O' => Message::Delete {
                    relation,
                    old: r.tuple()?,
                },
                other => return Err(r.error(format!("Delete tuple kind {:?}", other as char))),
            }
        }
        b'T' => {
            let count = r.u32("Truncate relation count")?;
            let options = r.u8("Truncate options")?;
            let mut relations = Vec::with_capacity((count as usize).min(r.remaining() / 4));
            for _ in 0..count {
                relations.push(r.u32("Truncate relation")?);
            }
            Message::Truncate {
                relations,
                cascade: options & 1 == 1,
                restart_identity: options & 2 == 2,
            }
        }
        b'M' => {
            let flags = r.u8("Message flags")?;
            let lsn = r.u64("Message LSN")?;
            let prefix = r.cstring("Message prefix")?;
            let length = r.u32("Message length")? as usize;
            Message::Message {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content: r.take(length, "Message content")?.to_vec(),
            }
        }
        other => {
            return Err(ParseError(format!(
                "unknown message type {:?} (0x{other:02x})",
                other as char
            )));
        }
    };
    if r.remaining() != 0 {
        return Err(r.error(format!("{} bytes after the message", r.remaining())));
    }
    Ok(message)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn error(&self, what: String) -> ParseError {
        ParseError(format!("{what} at byte {}", self.at))
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ParseError> {
        if self.remaining() < n {
            return Err(self.error(format!(
                "{what}: {n} bytes wanted, {} left",
                self.remaining()
            )));
        }
        let taken = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(taken)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ParseError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ParseError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ParseError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ParseError> {
        let b = self.take(8, what)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<(), ParseError> {
        match self.u8(what)? {
            found if found == tag => Ok(()),
            found => Err(self.error(format!(
                "{what}: {:?} expected, {:?} found",
                tag as char, found as char
            ))),
        }
    }

    fn cstring(&mut self, what: &str) -> Result<String, ParseError> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.error(format!("{what}: no terminating NUL")))?;
        let text = std::str::from_utf8(&rest[..end])
            .map_err(|e| self.error(format!("{what}: not UTF-8 ({e})")))?
            .to_owned();
        self.at += end + 1;
        Ok(text)
    }

    fn tuple(&mut self) -> Result<Tuple, ParseError> {
        let count = self.u16("tuple column count")?;
        let mut tuple = Vec::with_capacity(usize::from(count).min(self.remaining()));
        for _ in 0..count {
            tuple.push(match self.u8("column kind")? {
                b'n' => Datum::Null,
                b'u' => Datum::UnchangedToast,
                b't' => {
                    let length = self.u32("column length")? as usize;
                    let bytes = self.take(length, "column text")?;
                    Datum::Text(
                        std::str::from_utf8(bytes)
                            .map_err(|e| self.error(format!("column text not UTF-8 ({e})")))?
                            .to_owned(),
                    )
                }
                b'b' => {
                    let length = self.u32("column length")? as usize;
                    Datum::Binary(self.take(length, "column bytes")?.to_vec())
                }
                other => return Err(self.error(format!("column kind {:?}", other as char))),
            });
        }
        Ok(tuple)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    // Captured from PostgreSQL 15 (`encode(data, 'hex')` of pg_logical_slot_peek_binary_changes)
    // for: CREATE TABLE cdc_t(id int primary key, name text, n numeric(10,2), ts timestamptz,
    // j jsonb, arr int[], b bytea); INSERT ...; UPDATE cdc_t SET id = 2; a message; DELETE;
    // TRUNCATE.
    const RELATION: &str = "52000040007075626c6963006364635f74006400070169640000000017ffffffff006e616d650000000019ffffffff006e00000006a4000a000600747300000004a0ffffffff006a0000000edaffffffff0061727200000003efffffffff00620000000011ffffffff";

    #[test]
    fn messages_captured_from_postgres_parse() {
        assert_eq!(
            parse(&hex("42000000000152a0d8000304e8cb0fc309000002d7")).unwrap(),
            Message::Begin {
                final_lsn: 0x152a0d8,
                commit_time: 0x000304e8cb0fc309,
                xid: 727
            }
        );
        let Message::Relation(relation) = parse(&hex(RELATION)).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(
            (relation.namespace.as_str(), relation.name.as_str()),
            ("public", "cdc_t")
        );
        assert_eq!(relation.replica_identity, b'd');
        let names: Vec<_> = relation.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "name", "n", "ts", "j", "arr", "b"]);
        assert!(relation.columns[0].key && !relation.columns[1].key);
        assert_eq!(relation.columns[2].type_oid, 1700);
        assert_eq!(relation.columns[2].type_modifier, 0x000a0006);
        assert_eq!(relation.columns[1].type_modifier, -1);

        let insert = "49000040004e00077400000001317400000001617400000004312e3530740000001d323032362d31322d30352032313a35333a33352e3836323536312b303074000000087b2278223a20317d74000000057b312c327d74000000065c7830313032";
        let Message::Insert {
            relation: 0x4000,
            new,
        } = parse(&hex(insert)).unwrap()
        else {
            panic!("not an insert")
        };
        assert_eq!(new[0], Datum::Text("1".into()));
        assert_eq!(new[3], Datum::Text("2026-12-05 21:53:35.862561+00".into()));
        assert_eq!(new[6], Datum::Text("\\x0102".into()));

        let update = "55000040004b00077400000001316e6e6e6e6e6e4e00077400000001327400000001617400000004312e3530740000001d323032362d31322d30352032313a35333a33352e3836323536312b303074000000087b2278223a20317d74000000057b312c327d74000000065c7830313032";
        let Message::Update {
            old: Some(old),
            new,
            ..
        } = parse(&hex(update)).unwrap()
        else {
            panic!("not an update with the old key")
        };
        assert_eq!(old[0], Datum::Text("1".into()));
        assert_eq!(old[1], Datum::Null);
        assert_eq!(new[0], Datum::Text("2".into()));

        assert_eq!(
            parse(&hex("44000040004b00077400000001326e6e6e6e6e6e")).unwrap(),
            Message::Delete {
                relation: 0x4000,
                old: vec![
                    Datum::Text("2".into()),
                    Datum::Null,
                    Datum::Null,
                    Datum::Null,
                    Datum::Null,
                    Datum::Null,
                    Datum::Null
                ]
            }
        );
        assert_eq!(
            parse(&hex("4d00000000000152a258776300000000056c6f773a31")).unwrap(),
            Message::Message {
                transactional: false,
                lsn: 0x152a258,
                prefix: "wc".into(),
                content: b"low:1".to_vec()
            }
        );
        assert_eq!(
            parse(&hex("54000000010000004000")).unwrap(),
            Message::Truncate {
                relations: vec![0x4000],
                cascade: false,
                restart_identity: false
            }
        );
        assert_eq!(
            parse(&hex("4300000000000152a1e8000000000152a218000304e8cb0fd167")).unwrap(),
            Message::Commit {
                commit_lsn: 0x152a1e8,
                end_lsn: 0x152a218,
                commit_time: 0x000304e8cb0fd167
            }
        );
    }

    #[test]
    fn unchanged_toast_types_and_origins_parse() {
        let mut update = vec![b'U', 0, 0, 0, 7, b'N', 0, 2, b'u', b't', 0, 0, 0, 1, b'x'];
        assert_eq!(
            parse(&update).unwrap(),
            Message::Update {
                relation: 7,
                old: None,
                new: vec![Datum::UnchangedToast, Datum::Text("x".into())]
            }
        );
        update.push(0);
        assert!(
            parse(&update)
                .unwrap_err()
                .0
                .contains("1 bytes after the message")
        );
        let ty = [b'Y', 0, 0, 0x40, 1, b'p', 0, b'm', b'o', b'o', b'd', 0];
        assert_eq!(
            parse(&ty).unwrap(),
            Message::Type {
                id: 0x4001,
                namespace: "p".into(),
                name: "mood".into()
            }
        );
        let origin = [b'O', 0, 0, 0, 0, 0, 0, 0, 9, b'n', 0];
        assert_eq!(
            parse(&origin).unwrap(),
            Message::Origin {
                lsn: 9,
                name: "n".into()
            }
        );
    }

    #[test]
    fn every_truncation_of_a_message_is_an_error_not_a_panic() {
        let relation = hex(RELATION);
        for end in 0..relation.len() {
            assert!(parse(&relation[..end]).is_err(), "prefix of {end} bytes");
        }
        let err = parse(&[b'I', 0, 0, 0, 1, b'N', 0, 1, b't', 0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert!(err.to_string().contains("column text"), "{err}");
        assert!(parse(b"Z").unwrap_err().0.contains("unknown message type"));
    }
}
