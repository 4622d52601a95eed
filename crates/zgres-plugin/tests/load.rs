//! The host loads real plugin libraries built from `plugins/`.

use zgres_plugin::{LoadedPlugin, PluginError};
use zgres_testkit::artifacts::library;

#[test]
fn the_example_plugin_answers_json() {
    let plugin = LoadedPlugin::load(&library("zgres_plugin_example")).unwrap();
    assert_eq!(plugin.name(), "example");
    let snapshot = br#"{"v":1,"groups":{"main":{"primary":{"node":"10.0.0.1:5432"},"replicas":[]},
        "other":{"primary":null,"replicas":[]}}}"#;
    let answer: serde_json::Value =
        serde_json::from_slice(&plugin.call(snapshot).unwrap()).unwrap();
    assert_eq!(answer["groups"], 2);
    assert_eq!(answer["primaries"]["main"], "10.0.0.1:5432");
    assert!(answer["primaries"].get("other").is_none());
}

#[test]
fn errors_and_panics_come_back_as_errors_and_the_host_carries_on() {
    let plugin = LoadedPlugin::load(&library("zgres_plugin_example")).unwrap();
    match plugin.call(b"not json") {
        Err(PluginError::Failed { message, .. }) => assert!(message.contains("not JSON")),
        other => panic!("expected a failure, got {other:?}"),
    }
    match plugin.call(br#"{"panic": true}"#) {
        Err(PluginError::Panicked { message, .. }) => assert!(message.contains("asked to panic")),
        other => panic!("expected a caught panic, got {other:?}"),
    }
    assert!(
        plugin.call(br#"{"groups": {}}"#).is_ok(),
        "the plugin still works"
    );
}

#[test]
fn a_plugin_with_another_abi_version_is_refused_before_any_call() {
    match LoadedPlugin::load(&library("zgres_plugin_example_wrong_abi")) {
        Err(e @ PluginError::Incompatible { found: 999, .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("ABI version 999") && text.contains("ABI version 1"),
                "{text}"
            );
        }
        other => panic!("expected an ABI refusal, got {other:?}"),
    }
}

#[test]
fn a_missing_library_is_a_clear_error() {
    let err = LoadedPlugin::load(std::path::Path::new("/nonexistent/libnope.so")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/libnope.so"), "{err}");
}
