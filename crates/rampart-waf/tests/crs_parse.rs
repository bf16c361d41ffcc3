//! Every directive of the OWASP Core Rule Set v4 (`../shared/crs`) and, when installed, of
//! Debian's `modsecurity-crs` (v3.3) parses, rule parts included, and every CRS v4 operator
//! compiles (regexes, phrase files, address lists).

use std::path::{Path, PathBuf};

mod support;

use support::{Dir, crs_v4};

use rampart_waf::{
    CompiledOperator, parse_actions, parse_operator, parse_variables, split_directives,
};

fn conf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    files
}

/// Parses every file; returns (directives, rules) and panics with every problem found.
fn parse_all(files: &[PathBuf]) -> (usize, usize) {
    let mut problems = Vec::new();
    let (mut directives, mut rules) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let parsed = match split_directives(&text, &file.display().to_string()) {
            Ok(d) => d,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        directives += parsed.len();
        for d in parsed {
            let check =
                |r: Result<(), String>| r.map_err(|m| format!("{}: {} {m}", d.origin, d.name));
            let result = match d.name.as_str() {
                "SecRule" => {
                    rules += 1;
                    if d.args.len() < 2 || d.args.len() > 3 {
                        Err(format!(
                            "{}: SecRule with {} arguments",
                            d.origin,
                            d.args.len()
                        ))
                    } else {
                        let dir = file.parent().unwrap().to_path_buf();
                        let data = move |name: &str| {
                            std::fs::read_to_string(dir.join(name))
                                .map_err(|e| format!("{name}: {e}"))
                        };
                        check(parse_variables(&d.args[0]).map(|_| ()))
                            .and_then(|_| check(parse_operator(&d.args[1]).map(|_| ())))
                            .and_then(|_| {
                                let op = parse_operator(&d.args[1]).expect("parsed above");
                                check(CompiledOperator::compile(&op, &data).map(|_| ()))
                            })
                            .and_then(|_| match d.args.get(2) {
                                Some(a) => check(parse_actions(a).map(|_| ())),
                                None => Ok(()),
                            })
                    }
                }
                "SecAction" | "SecDefaultAction" => match d.args.first() {
                    Some(a) => check(parse_actions(a).map(|_| ())),
                    None => Err(format!("{}: {} without actions", d.origin, d.name)),
                },
                _ => Ok(()),
            };
            if let Err(e) = result {
                problems.push(e);
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    (directives, rules)
}

#[test]
fn crs_v4_parses() {
    let root = crs_v4();
    let mut files = conf_files(&root.join("rules"));
    files.push(root.join("crs-setup.conf.example"));
    let (directives, rules) = parse_all(&files);
    assert!(rules >= 690, "{rules} rules");
    assert!(directives >= rules, "{directives}");
}

#[test]
#[ignore = "needs Debian's modsecurity-crs package (scripts/test installs it)"]
fn debian_crs_v3_parses() {
    let root = Path::new("/usr/share/modsecurity-crs");
    let mut files = conf_files(&root.join("rules"));
    let setup = Path::new("/etc/modsecurity/crs/crs-setup.conf");
    if setup.exists() {
        files.push(setup.to_path_buf());
    }
    let (_, rules) = parse_all(&files);
    assert!(rules >= 500, "{rules} rules in Debian's CRS");
}

#[test]
fn crs_v4_compiles_into_a_rule_set() {
    let main = "SecRuleEngine DetectionOnly\nSecRequestBodyAccess On\n\
                Include crs-setup.conf.example\nInclude rules/*.conf\n";
    let set =
        rampart_waf::compile(main, "main.conf", &Dir(crs_v4())).unwrap_or_else(|e| panic!("{e}"));
    let rules = set.rules().count();
    assert!(rules >= 500, "{rules} rules");
    for id in [920100, 942100, 941100, 949110, 980170] {
        assert!(set.rule(id).is_some(), "rule {id} missing");
    }
    assert!(set.defaults.contains_key(&1) && set.defaults.contains_key(&2));
}

#[test]
#[ignore = "needs Debian's modsecurity-crs package (scripts/test installs it)"]
fn debian_crs_v3_compiles_into_a_rule_set() {
    let root = PathBuf::from("/usr/share/modsecurity-crs");
    let setup = std::fs::read_to_string("/etc/modsecurity/crs/crs-setup.conf").unwrap_or_default();
    let main = format!("SecRuleEngine DetectionOnly\n{setup}\nInclude rules/*.conf\n");
    let set =
        rampart_waf::compile(&main, "main.conf", &Dir(root)).unwrap_or_else(|e| panic!("{e}"));
    assert!(set.rules().count() >= 400);
}

fn crs_transaction(
    set: &std::sync::Arc<rampart_waf::RuleSet>,
    uri: &str,
) -> rampart_waf::Transaction {
    let head = rampart_waf::RequestHead {
        method: "GET".into(),
        uri: uri.into(),
        protocol: "HTTP/1.1".into(),
        headers: vec![
            ("Host".into(), b"localhost".to_vec()),
            (
                "User-Agent".into(),
                b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".to_vec(),
            ),
            ("Accept".into(), b"text/html,application/xhtml+xml".to_vec()),
        ],
        remote_addr: "192.0.2.10".parse().unwrap(),
        remote_port: 40000,
        unique_id: "t1".into(),
    };
    let mut t = rampart_waf::Transaction::new(set.clone(), head);
    t.process_request_headers();
    t.process_request_body(b"");
    t
}

#[test]
fn crs_v4_scores_an_attack_and_passes_a_plain_request() {
    let main = "SecRuleEngine On\nSecRequestBodyAccess On\n\
                Include crs-setup.conf.example\nInclude rules/*.conf\n";
    let set = std::sync::Arc::new(
        rampart_waf::compile(main, "main.conf", &Dir(crs_v4())).unwrap_or_else(|e| panic!("{e}")),
    );
    let plain = crs_transaction(&set, "/search?q=hello+world&page=2");
    assert!(plain.intervention().is_none(), "{:?}", plain.messages());
    let attack = crs_transaction(
        &set,
        "/item?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
    );
    let ids: Vec<u64> = attack.messages().iter().map(|m| m.rule_id).collect();
    assert!(
        ids.iter().any(|id| (942000..943000).contains(id)),
        "no SQLi rule in {ids:?}"
    );
    assert!(
        ids.contains(&949110),
        "no inbound anomaly verdict in {ids:?}"
    );
    assert_eq!(attack.intervention().map(|i| i.rule_id), Some(949110));
}
