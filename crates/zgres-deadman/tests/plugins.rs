//! Deadman plugins, both kinds: metadata lands in the node's state, and a veto takes its
//! `/conn` away until lifted.

use std::os::unix::fs::PermissionsExt;

use zgres_schema::decode;
use zgres_schema::documents::NodeState;
use zgres_testkit::artifacts::library;
use zgres_testkit::group::{Group, Timing, DEADLINE};
use zgres_testkit::poll;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_add_metadata_and_vetoes_take_conn_away() {
    let mut group = Group::prepare(1, Timing::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let veto = dir.path().join("veto");
    let script = dir.path().join("zone-check");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntest -s \"$1\" || exit 1\n\
             if [ -e {v} ]; then echo '{{\"meta\": {{\"az\": \"zone-a\"}}, \"veto\": \"maintenance\"}}';\n\
             else echo '{{\"meta\": {{\"az\": \"zone-a\"}}}}'; fi\n",
            v = veto.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    group.nodes[0].extra_config = format!(
        "[[plugin]]\ncommand = [\"{}\"]\n[[plugin]]\nlibrary = \"{}\"\n",
        script.display(),
        library("zgres_plugin_example").display()
    );
    group.start(0);
    assert_eq!(group.wait_primary(&[]).await, 0);

    let client = group.zk_client().await;
    let node = group.nodes[0].node_id();
    let state_path = format!("{}/main_{node}", group.layout.dir(zgres_schema::Dir::State));
    let conn_path = format!("{}/main_{node}", group.layout.dir(zgres_schema::Dir::Conn));
    let state = || async {
        let (data, _) = client.get_data(&state_path).await.ok()?;
        decode::<NodeState>(&state_path, &data).ok()
    };
    // The state is written just before /conn in the same round: wait for both.
    poll::until(
        "plugin metadata in the state, and /conn",
        DEADLINE,
        || async {
            let s = state().await?;
            let meta = s.meta.get("az")? == "zone-a"
                && s.meta.get("example")? == &format!("checked {node}")[..];
            let conn = client.check_stat(&conn_path).await.ok()?.is_some();
            (meta && conn).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));

    std::fs::write(&veto, "").unwrap();
    poll::until("the veto to take /conn away", DEADLINE, || async {
        let s = state().await?;
        let vetoed = s.problems.iter().any(|p| p.contains("maintenance"));
        let gone = client.check_stat(&conn_path).await.ok()?.is_none();
        (vetoed && gone).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));

    std::fs::remove_file(&veto).unwrap();
    poll::until("/conn back once the veto is lifted", DEADLINE, || async {
        client.check_stat(&conn_path).await.ok()?.map(|_| ())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", group.logs()));
}

#[test]
fn a_plugin_library_of_another_abi_stops_the_deadman_at_start() {
    // Config validation passes (the file exists); loading refuses it: exit 78, clear message.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
    let run_as = if nix::unistd::Uid::effective().is_root() {
        "run_as = \"postgres\"\n"
    } else {
        ""
    };
    let config = dir.path().join("deadman.toml");
    std::fs::write(
        &config,
        format!(
            "[zookeeper]\nconnect = \"127.0.0.1:1\"\n[node]\ngroup = \"main\"\naddress = \"127.0.0.1\"\n\
             [postgres]\ndata_dir = \"{}\"\nport = 5432\n{run_as}\
             [[plugin]]\nlibrary = \"{}\"\n",
            data.display(),
            library("zgres_plugin_example_wrong_abi").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zgres-deadman"))
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ABI version 999"), "{stderr}");
    assert_eq!(out.status.code(), Some(78), "{stderr}");
}
