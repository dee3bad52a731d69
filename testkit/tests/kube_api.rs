//! The test API server speaks the protocol the agent's tests rely on: paged lists that add up
//! to every object, watches that resume from a version, and 410 Gone only for versions older
//! than the last compaction.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use vsteer_testkit::kube_api::{IstioApi, KubeApi};

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}})
}

fn connect(api: &KubeApi, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(api.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: api\r\n\r\n").expect("request");
    stream
}

fn get(api: &KubeApi, path: &str) -> Value {
    let mut text = String::new();
    connect(api, path)
        .read_to_string(&mut text)
        .expect("response");
    let body = text.split_once("\r\n\r\n").expect("a body").1;
    serde_json::from_str(body).expect("json")
}

/// The first event line of a watch.
fn first_event(api: &KubeApi, path: &str) -> Value {
    let mut reader = BufReader::new(connect(api, path));
    let mut line = String::new();
    // Headers, then the first line of the body.
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        if line == "\r\n" {
            break;
        }
    }
    line.clear();
    reader.read_line(&mut line).expect("event");
    serde_json::from_str(&line).expect("event json")
}

#[test]
fn pages_add_up_watches_resume_and_only_old_versions_are_gone() {
    let api = KubeApi::start(IstioApi::None).expect("server");
    for name in ["a", "b", "c", "d", "e"] {
        api.apply(service(name)).expect("apply");
    }
    let mut names = Vec::new();
    let mut path = "/api/v1/services?limit=2".to_string();
    let version = loop {
        let page = get(&api, &path);
        assert!(page["items"].as_array().expect("items").len() <= 2);
        for item in page["items"].as_array().expect("items") {
            names.push(item["metadata"]["name"].as_str().expect("name").to_string());
        }
        match page["metadata"]["continue"].as_str() {
            Some(token) => path = format!("/api/v1/services?limit=2&continue={token}"),
            None => break page["metadata"]["resourceVersion"].clone(),
        }
    };
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    let version = version.as_str().expect("version").to_string();

    // A watch from the list's version sees the next change.
    api.apply(service("f")).expect("apply");
    let event = first_event(
        &api,
        &format!("/api/v1/services?watch=true&resourceVersion={version}"),
    );
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "f");

    // After a compaction: the old version is gone, a list's version is not.
    api.compact();
    let event = first_event(
        &api,
        &format!("/api/v1/services?watch=true&resourceVersion={version}"),
    );
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    let latest = get(&api, "/api/v1/services")["metadata"]["resourceVersion"]
        .as_str()
        .expect("version")
        .to_string();
    api.apply(service("g")).expect("apply");
    let event = first_event(
        &api,
        &format!("/api/v1/services?watch=true&resourceVersion={latest}"),
    );
    assert_eq!(event["type"], "ADDED", "{event}");
}
