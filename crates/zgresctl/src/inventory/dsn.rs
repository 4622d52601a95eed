//! Connection strings for a group's primary or replicas (`zgresctl dsn`), from the `/conn`
//! documents the deadmen publish while their node is healthy. A document is used only if it is
//! ephemeral and passes [`ConnInfo::check`], as zgres-sync does: what reaches a connection
//! string is never taken from ZooKeeper unchecked.

use serde::Serialize;
use zgres_schema::documents::{ConnInfo, Lock, Role};
use zgres_schema::{decode, NodeId, Znode};

use super::{CtlError, Inventory, Refusal};

/// A libpq connection string and the nodes it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dsn {
    /// The group.
    pub group: String,
    /// Key/value libpq connection string, without user or password.
    pub dsn: String,
    /// The nodes it leads to, in its order.
    pub nodes: Vec<NodeId>,
}

/// `host=… port=…` for `conns` (several as libpq's comma lists), the database when they all
/// name the same one, and for replicas `target_session_attrs=standby` (libpq 14 and later),
/// so a client skips a node that was promoted meanwhile.
pub fn render(conns: &[&ConnInfo], replicas: bool) -> String {
    let list =
        |f: &dyn Fn(&ConnInfo) -> String| conns.iter().map(|c| f(c)).collect::<Vec<_>>().join(",");
    let mut dsn = format!(
        "host={} port={}",
        list(&|c| c.host.clone()),
        list(&|c| c.port.to_string())
    );
    let first = conns.first().and_then(|c| c.dbname.as_deref());
    if let Some(db) = first.filter(|db| conns.iter().all(|c| c.dbname.as_deref() == Some(*db))) {
        dsn.push_str(&format!(" dbname={db}"));
    }
    if replicas {
        dsn.push_str(" target_session_attrs=standby");
    }
    dsn
}

impl Inventory {
    /// The connection string of `group`'s primary, or with `replicas` of its healthy replicas
    /// that are not tagged `noloadbalance`.
    ///
    /// # Errors
    /// [`Refusal::NoPrimary`] / [`Refusal::NoHealthyReplica`] when there is none;
    /// [`CtlError::UnknownGroup`]; ZooKeeper failures.
    pub async fn dsn(&self, group: &str, replicas: bool) -> Result<Dsn, CtlError> {
        let name = self.group_name(group)?;
        let lock_path = self.layout.path(&Znode::Lock(name.clone()));
        let holder = match self.get(&lock_path).await? {
            Some((data, stat)) if stat.ephemeral_owner != 0 => {
                decode::<Lock>(&lock_path, &data).ok().map(|l| l.node)
            }
            _ => None,
        };
        let mut conns: Vec<(NodeId, ConnInfo)> = Vec::new();
        for child in self.children(zgres_schema::Dir::Conn).await? {
            let path = format!("{}/{child}", self.layout.dir(zgres_schema::Dir::Conn));
            let Ok(Znode::Conn(g, node)) = self.layout.parse(&path) else {
                continue;
            };
            if g != name {
                continue;
            }
            let Some((data, stat)) = self.get(&path).await? else {
                continue;
            };
            match decode::<ConnInfo>(&path, &data) {
                Ok(info) if stat.ephemeral_owner != 0 && info.check(node).is_ok() => {
                    conns.push((node, info));
                }
                _ => eprintln!("zgresctl: ignoring unusable {path}"),
            }
        }
        if conns.is_empty() && holder.is_none() {
            // Nothing to connect to: say so if the group does not exist at all.
            self.groups(Some(group)).await?;
        }
        conns.sort_by_key(|(node, _)| *node);
        let is_primary = |node: &NodeId, info: &ConnInfo| {
            holder == Some(*node) && info.role.map_or(true, |r| r == Role::Primary)
        };
        let chosen: Vec<&(NodeId, ConnInfo)> = conns
            .iter()
            .filter(|(node, info)| {
                if replicas {
                    !is_primary(node, info) && !info.tags.noloadbalance
                } else {
                    is_primary(node, info)
                }
            })
            .collect();
        if chosen.is_empty() {
            return Err(if replicas {
                Refusal::NoHealthyReplica(group.to_owned())
            } else {
                Refusal::NoPrimary(group.to_owned())
            }
            .into());
        }
        let infos: Vec<&ConnInfo> = chosen.iter().map(|(_, info)| info).collect();
        Ok(Dsn {
            group: group.to_owned(),
            dsn: render(&infos, replicas),
            nodes: chosen.iter().map(|(node, _)| *node).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zgres_schema::documents::Tags;

    fn conn(host: &str, port: u16, dbname: Option<&str>) -> ConnInfo {
        ConnInfo {
            host: host.into(),
            port,
            dbname: dbname.map(Into::into),
            tags: Tags::default(),
            role: None,
            api_port: None,
        }
    }

    #[test]
    fn one_node_or_a_list_with_the_shared_database() {
        let a = conn("10.0.0.1", 5432, Some("app"));
        assert_eq!(render(&[&a], false), "host=10.0.0.1 port=5432 dbname=app");
        let b = conn("db2.example.com", 5433, Some("app"));
        assert_eq!(
            render(&[&a, &b], true),
            "host=10.0.0.1,db2.example.com port=5432,5433 dbname=app target_session_attrs=standby"
        );
        let c = conn("10.0.0.3", 5432, None);
        assert_eq!(
            render(&[&a, &c], true),
            "host=10.0.0.1,10.0.0.3 port=5432,5432 target_session_attrs=standby",
            "no database when they disagree"
        );
    }
}
