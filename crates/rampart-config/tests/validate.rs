use std::path::Path;

fn load(text: &str) -> Result<rampart_config::Snapshot, rampart_config::ConfigErrors> {
    rampart_config::load_str(text, "test.toml", Path::new("."))
}

const GOOD: &str = r#"
[[listeners]]
name = "web"
address = "127.0.0.1:8080"

[[pools]]
name = "api"
algorithm = "weighted_round_robin"
backends = [
  { address = "127.0.0.1:9001", weight = 3 },
  { address = "backend.internal:9002", id = "b2" },
  { address = "[::1]:9003", backup = true },
]
health_check = { path = "/healthz", interval = "1s", rise = 2, fall = 2 }
sticky = { mode = "cookie", cookie = "srv", ttl = "1h" }

[[routes]]
name = "api"
match = { hosts = ["api.example.com", "*.example.org"], path_prefix = "/v1", methods = ["get", "POST"] }
pool = "api"
max_body = "1MiB"
"#;

#[test]
fn valid_config_builds_snapshot() {
    let s = load(GOOD).expect("valid");
    assert_eq!(s.listeners[0].address.port(), 8080);
    let pool = &s.pools[0];
    assert_eq!(pool.backends.len(), 3);
    assert_eq!(pool.backends[0].id, "api-1");
    assert_eq!(pool.backends[1].host, "backend.internal");
    assert_eq!(pool.backends[2].authority(), "[::1]:9003");
    assert!(pool.backends[2].backup);
    assert_eq!(s.routes[0].max_body, Some(1 << 20));
    assert_eq!(s.routes[0].matcher.methods[0], http::Method::GET);
    assert!(s.summary().contains("1 listeners"));
}

#[test]
fn every_error_is_reported_with_position_and_path() {
    let text = r#"
[[listeners]]
name = "web"
address = "nowhere"
colour = "blue"

[[pools]]
name = "api"
algorithm = "fastest"
backends = [ { address = "127.0.0.1:0" }, { address = "127.0.0.1:9000", weight = -1 } ]

[[routes]]
name = "r"
pool = "missing"
match = { path_regex = "(" }
"#;
    let errors = load(text).unwrap_err();
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let all = lines.join("\n");
    assert!(
        all.contains("test.toml:4:1: listeners[0].address: invalid address \"nowhere\""),
        "{all}"
    );
    assert!(
        all.contains("test.toml:5:1: listeners[0].colour: unknown key \"colour\""),
        "{all}"
    );
    assert!(
        all.contains("pools[0].algorithm: unknown value \"fastest\""),
        "{all}"
    );
    assert!(
        all.contains("pools[0].backends[0].address: invalid address \"127.0.0.1:0\""),
        "{all}"
    );
    assert!(
        all.contains("pools[0].backends[1].weight: -1 is out of range"),
        "{all}"
    );
    assert!(
        all.contains("routes[0].pool: no pool named \"missing\""),
        "{all}"
    );
    assert!(
        all.contains("routes[0].match.path_regex: invalid regex"),
        "{all}"
    );
    assert!(lines.len() >= 7, "{all}");
}

#[test]
fn syntax_and_type_errors_name_position() {
    let e = load("[[listeners]\nname = 1").unwrap_err();
    assert!(e.to_string().starts_with("test.toml:1:"), "{e}");
    assert!(e.to_string().contains("syntax"), "{e}");
    let e = load("[[listeners]]\nname = 1\naddress = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(e.to_string().contains("test.toml:2:"), "{e}");
    assert!(e.to_string().contains("listeners[0].name"), "{e}");
}

#[test]
fn hostile_inputs_do_not_panic() {
    for text in [
        "",
        "\u{0}",
        "[[[[",
        "listeners = 5",
        "listeners = [1, 2]",
        "[[listeners]]\naddress = \"999.1.1.1:80\"",
        "[[pools]]\nname = \"p\"\nbackends = [{ address = \"a:99999\" }]",
        "[[routes]]\nmatch = { path_regex = \"a{1000}{1000}{1000}\" }",
        &"a = [".repeat(10_000),
    ] {
        let _ = load(text);
    }
}

#[test]
fn admin_requires_token_and_loopback() {
    let text = format!("{GOOD}\n[admin]\naddress = \"0.0.0.0:9091\"\n");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("not loopback"), "{e}");
    assert!(e.contains("bearer token"), "{e}");
}

#[test]
fn header_limits_above_the_maximum_are_errors() {
    let text = format!(
        "{GOOD}\n[[listeners]]\nname = \"big\"\naddress = \"127.0.0.1:9\"\nlimits = {{ max_header_bytes = \"2MiB\" }}\n"
    );
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("listeners[1].limits.max_header_bytes: 2097152 bytes is more than the maximum of 1048576"), "{e}");
}

#[test]
fn upgrade_socket_paths_are_checked() {
    let with = |path: &str| format!("[runtime]\nupgrade_socket = \"{path}\"\n{GOOD}");
    let ok = load(&with("/tmp/rampart-upgrade.sock")).expect("valid");
    assert_eq!(
        ok.runtime.upgrade_socket.as_deref(),
        Some(Path::new("/tmp/rampart-upgrade.sock"))
    );
    let cases = [
        ("/no/such/directory/upgrade.sock", "directory of"),
        ("/tmp/", "expected the path of a socket file"),
        ("", "expected the path of a socket file"),
    ];
    for (path, want) in cases {
        let errors = load(&with(path)).unwrap_err().to_string();
        assert!(
            errors.contains("runtime.upgrade_socket"),
            "{path}: {errors}"
        );
        assert!(errors.contains(want), "{path}: {errors}");
    }
    let long = format!("/tmp/{}.sock", "x".repeat(120));
    let errors = load(&with(&long)).unwrap_err().to_string();
    assert!(errors.contains("at most 107"), "{errors}");
}

#[test]
fn the_query_api_is_loopback_only_and_its_switches_need_it() {
    let with = |extra: &str| load(&format!("{GOOD}\n[observability]\n{extra}"));
    let ok =
        with("query_address = \"127.0.0.1:9095\"\nremote_write_receiver = true\n").expect("valid");
    let q = ok.observability.query.expect("query API");
    assert!(q.remote_write_receiver && !q.admin_api);
    let e = with("query_address = \"0.0.0.0:9095\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("observability.query_address") && e.contains("not a loopback address"),
        "{e}"
    );
    let e = with("tsdb_admin_api = true\n").unwrap_err().to_string();
    assert!(
        e.contains("observability.tsdb_admin_api: needs observability.query_address"),
        "{e}"
    );
    let e = with("query_address = \"127.0.0.1:9095\"\ntsdb_max_series = 0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("tsdb_max_series"), "{e}");
}
