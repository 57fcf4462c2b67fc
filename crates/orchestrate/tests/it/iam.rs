//! Every AWS call `orchestrate` makes is granted by the deploy role's policy
//! (`terraform/envs/dev/deploy_role.tf`) and documented with its policy JSON (`docs/iam.md`).

use std::collections::BTreeSet;
use std::fs;

use crate::util::repo;

/// How an AWS operation's name starts (snake case, as the SDK's client methods).
const VERBS: &[&str] = &[
    "batch_get_",
    "cancel_",
    "complete_",
    "continue_",
    "create_",
    "delete_",
    "deregister_",
    "describe_",
    "get_",
    "list_",
    "modify_",
    "put_",
    "register_",
    "rollback_",
    "set_",
    "start_",
    "stop_",
    "update_",
];

/// How `src` names its SDK clients (`clients.asg`, `let cd = &clients.cd`).
const CLIENTS: &[&str] = &["asg", "cd", "ecs", "elb", "ec2"];

/// The SDK operations called in `src`: `client.operation()` (chained up to `.send()`, or a
/// builder kept in a variable and sent later).
fn sdk_calls() -> BTreeSet<String> {
    let mut calls = BTreeSet::new();
    let src = repo().join("crates/orchestrate/src");
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices('.') {
            let name: String = text[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !VERBS.iter().any(|v| name.starts_with(v))
                || !text[at + 1 + name.len()..].starts_with("()")
            {
                continue;
            }
            let before = text[..at].trim_end();
            let receiver: String = before
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if CLIENTS.contains(&receiver.as_str()) {
                calls.insert(pascal(&name));
            }
        }
    }
    calls
}

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The actions of `data "aws_iam_policy_document" "orchestrate"`.
fn terraform_actions() -> BTreeSet<String> {
    let text = fs::read_to_string(repo().join("terraform/envs/dev/deploy_role.tf")).unwrap();
    let body = hcl::parse(&text).unwrap();
    let doc = body
        .blocks()
        .find(|b| {
            b.identifier() == "data"
                && b.labels().iter().map(|l| l.as_str()).collect::<Vec<_>>()
                    == ["aws_iam_policy_document", "orchestrate"]
        })
        .expect("the orchestrate policy document");
    let mut actions = BTreeSet::new();
    for st in doc
        .body()
        .blocks()
        .filter(|b| b.identifier() == "statement")
    {
        for attr in st.body().attributes().filter(|a| a.key() == "actions") {
            let hcl::Expression::Array(items) = attr.expr() else {
                panic!("actions is not a literal list: {:?}", attr.expr());
            };
            for item in items {
                let hcl::Expression::String(s) = item else {
                    panic!("action is not a literal string: {item:?}");
                };
                actions.insert(s.clone());
            }
        }
    }
    actions
}

/// The page, and the actions of the policy JSON it shows.
fn documented() -> (String, BTreeSet<String>) {
    let page = fs::read_to_string(repo().join("docs/iam.md")).unwrap();
    let json = page
        .split("```json")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a json block in docs/iam.md");
    let policy: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut actions = BTreeSet::new();
    for st in policy["Statement"].as_array().unwrap() {
        for a in st["Action"].as_array().unwrap() {
            actions.insert(a.as_str().unwrap().to_owned());
        }
    }
    (page, actions)
}

fn granted(actions: &BTreeSet<String>, op: &str) -> bool {
    [
        "autoscaling",
        "codedeploy",
        "ecs",
        "elasticloadbalancing",
        "ec2",
    ]
    .iter()
    .any(|svc| actions.contains(&format!("{svc}:{op}")))
}

#[test]
fn every_aws_call_is_granted_by_the_deploy_role_and_documented() {
    let calls = sdk_calls();
    // The scanner finds the calls it must (it cannot pass by finding nothing).
    for op in [
        "StartInstanceRefresh",
        "CreateDeployment",
        "RegisterTaskDefinition",
    ] {
        assert!(calls.contains(op), "scanner missed {op}: {calls:?}");
    }
    let terraform = terraform_actions();
    let (page, json) = documented();
    let mut missing = Vec::new();
    for op in &calls {
        if !granted(&terraform, op) {
            missing.push(format!("{op}: not in deploy_role.tf's orchestrate policy"));
        }
        if !granted(&json, op) {
            missing.push(format!("{op}: not in docs/iam.md's policy JSON"));
        }
        if !page.contains(&format!(":{op}`")) {
            missing.push(format!("{op}: not in docs/iam.md's table"));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
    // The task and execution roles are passed on registration.
    assert!(terraform.contains("iam:PassRole") && json.contains("iam:PassRole"));
}
