//! EC2 (the EC2 query dialect, `Version=2016-11-15`): just the launch template calls an
//! instance refresh needs.

use super::query::{Params, Xml};
use super::{ApiError, unsupported};
use crate::control::ec2::{LaunchTemplate, LaunchTemplateVersion, NewVersion, TemplateRef};
use crate::control::{Control, ControlError};

/// API version.
pub const VERSION: &str = "2016-11-15";

fn err(e: ControlError, r: Option<&TemplateRef>) -> ApiError {
    match (e, r) {
        (ControlError::NotFound { .. }, Some(TemplateRef::Id(id))) => ApiError::new(
            "InvalidLaunchTemplateId.NotFound",
            format!("The specified launch template, with template ID {id}, does not exist."),
        ),
        (ControlError::NotFound { name, .. }, _) => ApiError::new(
            "InvalidLaunchTemplateName.NotFoundException",
            format!("The specified launch template, with template name {name}, does not exist."),
        ),
        (ControlError::Validation(m), _) => ApiError::new("InvalidParameterValue", m),
        (ControlError::Conflict { code, message }, _) => ApiError::new(code, message),
    }
}

fn template_ref(p: &Params) -> Result<TemplateRef, ApiError> {
    match (p.get("LaunchTemplateName"), p.get("LaunchTemplateId")) {
        (Some(_), Some(_)) => Err(ApiError::new(
            "InvalidParameterCombination",
            "specify either LaunchTemplateName or LaunchTemplateId, not both",
        )),
        (Some(n), None) => Ok(TemplateRef::Name(n.to_owned())),
        (None, Some(id)) => Ok(TemplateRef::Id(id.to_owned())),
        (None, None) => Err(ApiError::new(
            "MissingParameter",
            "the request must contain the parameter LaunchTemplateName or LaunchTemplateId",
        )),
    }
}

/// Handles one action: one function per operation.
pub fn handle(c: &Control, action: &str, p: &Params) -> Result<Xml, ApiError> {
    match action {
        "CreateLaunchTemplateVersion" => create_launch_template_version(c, p),
        "DescribeLaunchTemplates" => describe_launch_templates(c, p),
        "DescribeLaunchTemplateVersions" => describe_launch_template_versions(c, p),
        other => Err(unsupported("EC2", other, "InvalidAction")),
    }
}

fn create_launch_template_version(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let r = template_ref(p)?;
    let data = p.nested("LaunchTemplateData");
    let (lt, v) = c
        .create_launch_template_version(
            &r,
            NewVersion {
                source_version: p.get("SourceVersion").map(str::to_owned),
                image_id: data.get("ImageId").map(str::to_owned),
                instance_type: data.get("InstanceType").map(str::to_owned),
                description: p.get("VersionDescription").map(str::to_owned),
            },
        )
        .map_err(|e| err(e, Some(&r)))?;
    let mut x = Xml::new();
    x.el("launchTemplateVersion", |x| version_xml(x, &lt, &v));
    Ok(x)
}

fn describe_launch_templates(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let names = p.item_values("LaunchTemplateName");
    let ids = p.item_values("LaunchTemplateId");
    let found: Vec<LaunchTemplate> = c.read(|st| {
        st.launch_templates
            .values()
            .filter(|t| {
                (names.is_empty() && ids.is_empty())
                    || names.contains(&t.name)
                    || ids.contains(&t.id)
            })
            .cloned()
            .collect()
    });
    if let Some(missing) = names.iter().find(|n| !found.iter().any(|t| &t.name == *n)) {
        return Err(err(
            ControlError::not_found("launch template", missing.clone()),
            None,
        ));
    }
    if let Some(missing) = ids.iter().find(|i| !found.iter().any(|t| &t.id == *i)) {
        let r = TemplateRef::Id(missing.clone());
        return Err(err(
            ControlError::not_found("launch template", missing.clone()),
            Some(&r),
        ));
    }
    let mut x = Xml::new();
    x.list("launchTemplates", "item", &found, |x, t| {
        x.leaf("launchTemplateId", &t.id)
            .leaf("launchTemplateName", &t.name)
            .time("createTime", t.created)
            .leaf("createdBy", crate::arn::global("iam", "root"))
            .leaf("defaultVersionNumber", t.default_version)
            .leaf("latestVersionNumber", t.latest());
    });
    Ok(x)
}

fn describe_launch_template_versions(c: &Control, p: &Params) -> Result<Xml, ApiError> {
    let r = template_ref(p)?;
    let wanted = p.item_values("LaunchTemplateVersion");
    let max = p.u32("MaxResults", 1, 200)?.unwrap_or(200);
    let lt = c
        .read(|st| st.launch_template(&r).cloned())
        .map_err(|e| err(e, Some(&r)))?;
    let mut numbers = Vec::new();
    for w in &wanted {
        let n = lt.resolve(w).ok_or_else(|| {
            ApiError::new(
                "InvalidLaunchTemplateId.VersionNotFound",
                format!("Could not find launch template version {w} for {}", lt.name),
            )
        })?;
        numbers.push(n);
    }
    let min_v = p.u32("MinVersion", 1, u32::MAX)?;
    let max_v = p.u32("MaxVersion", 1, u32::MAX)?;
    let versions: Vec<&LaunchTemplateVersion> = lt
        .versions
        .iter()
        .filter(|v| numbers.is_empty() || numbers.contains(&v.number))
        .filter(|v| min_v.is_none_or(|m| v.number >= m))
        .filter(|v| max_v.is_none_or(|m| v.number <= m))
        .collect();
    let (page, next) = super::autoscaling::paginate(&versions, max, p.get("NextToken"))?;
    let mut x = Xml::new();
    x.list("launchTemplateVersionSet", "item", page, |x, v| {
        version_xml(x, &lt, v);
    });
    x.opt("nextToken", next);
    Ok(x)
}

fn version_xml(x: &mut Xml, lt: &LaunchTemplate, v: &LaunchTemplateVersion) {
    x.leaf("launchTemplateId", &lt.id)
        .leaf("launchTemplateName", &lt.name)
        .leaf("versionNumber", v.number)
        .opt("versionDescription", v.description.as_deref())
        .time("createTime", v.created)
        .leaf("createdBy", crate::arn::global("iam", "root"))
        .leaf("defaultVersion", v.number == lt.default_version)
        .el("launchTemplateData", |x| {
            x.leaf("imageId", &v.data.image_id)
                .leaf("instanceType", &v.data.instance_type)
                .el("metadataOptions", |x| {
                    x.leaf("httpTokens", "required");
                });
        });
}
