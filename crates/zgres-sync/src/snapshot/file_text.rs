//! The snapshot file's text, kept per group: a change encodes only the groups that changed and
//! joins the pieces, giving byte for byte what `serde_json::to_vec_pretty` gives for the whole
//! snapshot (property-tested).
//!
//! It relies on two facts: JSON strings never hold a raw newline, so a value's pretty text is
//! nested by indenting after each newline; and group names hold no `_`, so a group's
//! `conn_info` keys are exactly those starting with `{group}_`.

use std::collections::BTreeMap;

use serde::Serialize;
use zgres_schema::documents::ConnInfo;
use zgres_schema::{GroupName, NodeId};

use super::{GroupSnapshot, Snapshot};

/// What the file shows of one group, as last encoded.
#[derive(Debug)]
struct GroupParts {
    group: GroupSnapshot,
    master: Option<NodeId>,
    databases: Option<Vec<NodeId>>,
    conn_info: Vec<(String, ConnInfo)>,
}

/// One group's encoded entries, in the four maps of the file.
#[derive(Debug)]
struct Encoded {
    parts: GroupParts,
    group: String,
    master: Option<String>,
    databases: Option<String>,
    conn_info: Vec<(String, String)>,
}

/// The snapshot file's text, re-encoding only the groups that changed.
#[derive(Debug, Default)]
pub struct SnapshotFileText {
    groups: BTreeMap<GroupName, Encoded>,
}

impl SnapshotFileText {
    /// The file's text for `snapshot` (as `serde_json::to_vec_pretty`), and how many groups
    /// had to be encoded again.
    ///
    /// # Errors
    /// When a value cannot be encoded (never for these types).
    pub fn update(&mut self, snapshot: &Snapshot) -> serde_json::Result<(Vec<u8>, usize)> {
        self.groups
            .retain(|name, _| snapshot.groups.contains_key(name));
        let mut encoded = 0;
        for (name, group) in &snapshot.groups {
            // Compared in place: only a changed group is copied and encoded.
            if self
                .groups
                .get(name)
                .is_some_and(|e| e.parts.same_as(snapshot, name, group))
            {
                continue;
            }
            let parts = parts_of(snapshot, name, group);
            self.groups.insert(name.clone(), encode_group(name, parts)?);
            encoded += 1;
        }
        Ok((self.join(snapshot.v)?, encoded))
    }

    fn join(&self, version: u32) -> serde_json::Result<Vec<u8>> {
        let groups = self.groups.values().map(|e| e.group.as_str());
        let masters = self.groups.values().filter_map(|e| e.master.as_deref());
        let databases = self.groups.values().filter_map(|e| e.databases.as_deref());
        // conn_info keys of different groups interleave ("aB_…" sorts before "a_…").
        let mut conn_info: Vec<&(String, String)> = self
            .groups
            .values()
            .flat_map(|e| e.conn_info.iter())
            .collect();
        conn_info.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut text = format!("{{\n  \"v\": {},\n", serde_json::to_string(&version)?);
        push_map(&mut text, "groups", groups);
        text.push_str(",\n");
        push_map(&mut text, "masters", masters);
        text.push_str(",\n");
        push_map(
            &mut text,
            "conn_info",
            conn_info.iter().map(|(_, e)| e.as_str()),
        );
        text.push_str(",\n");
        push_map(&mut text, "databases", databases);
        text.push_str("\n}");
        Ok(text.into_bytes())
    }
}

impl GroupParts {
    /// Whether `group` of `snapshot` shows exactly these parts.
    fn same_as(&self, snapshot: &Snapshot, name: &GroupName, group: &GroupSnapshot) -> bool {
        self.group == *group
            && self.master == snapshot.masters.get(name).copied()
            && self.databases.as_ref() == snapshot.databases.get(name)
            && conn_info_of(snapshot, name).eq(self.conn_info.iter().map(|(k, v)| (k, v)))
    }
}

/// The `conn_info` entries of group `name` (keys `{name}_…`).
fn conn_info_of<'a>(
    snapshot: &'a Snapshot,
    name: &GroupName,
) -> impl Iterator<Item = (&'a String, &'a ConnInfo)> {
    let prefix = format!("{name}_");
    snapshot
        .conn_info
        .range(prefix.clone()..)
        .take_while(move |(key, _)| key.starts_with(&prefix))
}

fn parts_of(snapshot: &Snapshot, name: &GroupName, group: &GroupSnapshot) -> GroupParts {
    GroupParts {
        group: group.clone(),
        master: snapshot.masters.get(name).copied(),
        databases: snapshot.databases.get(name).cloned(),
        conn_info: conn_info_of(snapshot, name)
            .map(|(key, info)| (key.clone(), info.clone()))
            .collect(),
    }
}

fn encode_group(name: &GroupName, parts: GroupParts) -> serde_json::Result<Encoded> {
    let key = name.as_str();
    Ok(Encoded {
        group: entry(key, &parts.group)?,
        master: parts.master.as_ref().map(|m| entry(key, m)).transpose()?,
        databases: parts
            .databases
            .as_ref()
            .map(|d| entry(key, d))
            .transpose()?,
        conn_info: parts
            .conn_info
            .iter()
            .map(|(k, info)| Ok((k.clone(), entry(k, info)?)))
            .collect::<serde_json::Result<_>>()?,
        parts,
    })
}

/// `"key": value` as a member of a map nested at depth 2 of the pretty file.
fn entry(key: &str, value: &impl Serialize) -> serde_json::Result<String> {
    let value = serde_json::to_string_pretty(value)?.replace('\n', "\n    ");
    Ok(format!("    {}: {value}", serde_json::to_string(key)?))
}

/// `  "name": {…}` with the entries in order, or `{}` when there are none.
fn push_map<'a>(text: &mut String, name: &str, entries: impl Iterator<Item = &'a str>) {
    text.push_str(&format!("  \"{name}\": {{"));
    let mut any = false;
    for entry in entries {
        text.push_str(if any { ",\n" } else { "\n" });
        text.push_str(entry);
        any = true;
    }
    text.push_str(if any { "\n  }" } else { "}" });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Endpoint;
    use proptest::prelude::*;
    use zgres_schema::documents::Tags;

    fn node(i: u8) -> NodeId {
        format!("10.0.0.{i}:5432").parse().unwrap()
    }

    fn endpoint(i: u8, dbname: bool) -> Endpoint {
        Endpoint {
            node: node(i),
            host: format!("10.0.0.{i}"),
            port: 5432,
            dbname: dbname.then(|| "app\"\n".to_owned()),
            tags: Tags::default(),
            api_port: (i % 2 == 0).then_some(8000 + u16::from(i)),
        }
    }

    fn snapshot() -> impl Strategy<Value = Snapshot> {
        let names = prop_oneof![Just("a"), Just("aB"), Just("a-b"), Just("b"), Just("Z.1")];
        let group = (
            proptest::option::of((1u8..4, any::<bool>())),
            proptest::collection::vec((1u8..4, any::<bool>()), 0..3),
            any::<bool>(),
        );
        proptest::collection::btree_map(names, group, 0..5).prop_map(|groups| {
            let mut s = Snapshot {
                v: 1,
                ..Snapshot::default()
            };
            for (name, (primary, replicas, listed)) in groups {
                let name = GroupName::new(name).unwrap();
                let g = GroupSnapshot {
                    primary: primary.map(|(i, d)| endpoint(i, d)),
                    replicas: replicas.iter().map(|&(i, d)| endpoint(i, d)).collect(),
                };
                if let Some(p) = &g.primary {
                    s.masters.insert(name.clone(), p.node);
                }
                if listed {
                    let nodes: Vec<NodeId> = g.replicas.iter().map(|e| e.node).collect();
                    for e in g.primary.iter().chain(&g.replicas) {
                        let info = ConnInfo {
                            role: None,
                            api_port: e.api_port,
                            host: e.host.clone(),
                            port: e.port,
                            dbname: e.dbname.clone(),
                            tags: Tags::default(),
                        };
                        s.conn_info.insert(format!("{name}_{}", e.node), info);
                    }
                    s.databases.insert(name.clone(), nodes);
                }
                s.groups.insert(name, g);
            }
            s
        })
    }

    proptest! {
        /// Over any sequence of snapshots the joined text is exactly the whole pretty encoding,
        /// and groups that did not change are not encoded again.
        #[test]
        fn joined_text_equals_the_whole_encoding(steps in proptest::collection::vec(snapshot(), 1..8)) {
            let mut text = SnapshotFileText::default();
            let mut previous: Option<Snapshot> = None;
            for s in steps {
                let (bytes, encoded) = text.update(&s).unwrap();
                prop_assert_eq!(
                    String::from_utf8(bytes).unwrap(),
                    String::from_utf8(serde_json::to_vec_pretty(&s).unwrap()).unwrap()
                );
                if previous.as_ref() == Some(&s) {
                    prop_assert_eq!(encoded, 0);
                }
                prop_assert!(encoded <= s.groups.len());
                previous = Some(s);
            }
        }
    }
}
