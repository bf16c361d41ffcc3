//! The PromQL engine over the head: Prometheus 3's delayed metric-name removal.

use rampart_promql::{Engine, Value};
use rampart_tsdb::Head;

fn head() -> Head {
    let head = Head::new(100);
    for name in ["a_total", "b_total"] {
        let labels = vec![
            ("__name__".to_string(), name.to_string()),
            ("env".to_string(), "1".to_string()),
        ];
        let samples: Vec<(i64, f64)> = (0..=10).map(|k| (k * 60_000, (k * 60) as f64)).collect();
        head.append(&labels, &samples).unwrap();
    }
    head
}

fn names(v: &Value) -> Vec<String> {
    let Value::Vector(v) = v else { panic!("{v:?}") };
    v.iter().map(|s| s.labels.to_string()).collect()
}

#[test]
fn names_go_when_the_query_ends_not_before() {
    let head = head();
    let engine = Engine::new(&head);
    let t = 600_000;
    // rate drops the name ...
    let v = engine.instant("rate(a_total[5m])", t).unwrap();
    assert_eq!(names(&v), [r#"{env="1"}"#]);
    // ... but a label function still sees it, and writing __name__ keeps it.
    let v = engine
        .instant(
            r#"label_replace(rate({env="1"}[5m]), "__name__", "rate_$1", "__name__", "(.+)")"#,
            t,
        )
        .unwrap();
    assert_eq!(
        names(&v),
        [
            r#"{__name__="rate_a_total", env="1"}"#,
            r#"{__name__="rate_b_total", env="1"}"#
        ]
    );
    // Grouping by a name that is to go yields two groups that collide once it goes.
    let e = engine
        .instant(r#"sum by (__name__) (rate({env="1"}[5m]))"#, t)
        .unwrap_err();
    assert!(e.to_string().contains("same labelset"), "{e}");
    // A selector alone keeps its name.
    let v = engine
        .instant(r#"sum by (__name__, env) (a_total)"#, t)
        .unwrap();
    assert_eq!(names(&v), [r#"{__name__="a_total", env="1"}"#]);
}
