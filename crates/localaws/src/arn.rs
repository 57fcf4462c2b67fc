//! ARNs: every resource localaws makes lives in one account and one region, and each ARN is
//! built here, so the account id and the region are written once. ELBv2's ARNs carry a stable
//! hash of the names (the same stack gives the same ARNs in every run).

/// The account id every ARN carries.
pub const ACCOUNT: &str = "000000000000";
/// The region every ARN carries.
pub const REGION: &str = "us-east-1";

/// A regional resource's ARN: `arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}`.
pub fn regional(service: &str, resource: &str) -> String {
    format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}")
}

/// An ECS service deployment's ARN.
pub(crate) fn service_deployment(cluster: &str, service: &str, id: &str) -> String {
    regional(
        "ecs",
        &format!("service-deployment/{cluster}/{service}/{id}"),
    )
}

/// An ECS service revision's ARN; `number` is its deployment's (`ecs-svc/NUMBER`).
pub(crate) fn service_revision(cluster: &str, service: &str, number: &str) -> String {
    regional(
        "ecs",
        &format!("service-revision/{cluster}/{service}/{number}"),
    )
}

/// A global service's ARN (IAM, STS): `arn:aws:{service}::{ACCOUNT}:{resource}`.
pub fn global(service: &str, resource: &str) -> String {
    format!("arn:aws:{service}::{ACCOUNT}:{resource}")
}

fn hash16(s: &str) -> String {
    // FNV-1a: stable across runs and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn prefix() -> String {
    format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}")
}

/// ARN of load balancer `lb`.
pub fn load_balancer_arn(lb: &str) -> String {
    format!("{}:loadbalancer/app/{lb}/{}", prefix(), hash16(lb))
}

/// ARN of listener `name` of `lb`.
pub fn listener_arn(lb: &str, name: &str) -> String {
    format!(
        "{}:listener/app/{lb}/{}/{}",
        prefix(),
        hash16(lb),
        hash16(&format!("{lb}/{name}"))
    )
}

/// ARN of the default rule of a listener.
pub fn rule_arn(lb: &str, name: &str) -> String {
    format!(
        "{}:listener-rule/app/{lb}/{}/{}/{}",
        prefix(),
        hash16(lb),
        hash16(&format!("{lb}/{name}")),
        hash16(&format!("{lb}/{name}/default"))
    )
}

/// ARN of target group `name`.
pub fn target_group_arn(name: &str) -> String {
    format!("{}:targetgroup/{name}/{}", prefix(), hash16(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_carry_the_account_and_region_and_elbv2_names_hash_stably() {
        assert_eq!(
            regional("ecs", "cluster/demo"),
            "arn:aws:ecs:us-east-1:000000000000:cluster/demo"
        );
        assert_eq!(global("iam", "root"), "arn:aws:iam::000000000000:root");
        let tg = target_group_arn("demo-tg-blue");
        assert!(
            tg.starts_with(
                "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/demo-tg-blue/"
            ),
            "{tg}"
        );
        assert_eq!(tg, target_group_arn("demo-tg-blue"));
        assert_ne!(tg, target_group_arn("demo-tg-green"));
        assert_ne!(
            listener_arn("demo-alb", "http"),
            listener_arn("demo-alb", "test")
        );
    }
}
