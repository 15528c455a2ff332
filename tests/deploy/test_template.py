"""Checks of the AWS deployment (deploy/aws/template.yaml, deploy/aws/deploy.sh).

1. cfn-lint and checkov report nothing, and every suppression carries a reason.
2. The template is created in moto's CloudFormation (moto in server mode on a
   free loopback port). Resource types and attributes moto cannot create are
   removed from a copy of the template made here, from the one list
   EMULATOR_GAPS below (with the reason for each); the run prints what was
   left out. Then the live emulator is asked: the bucket (encryption, public
   access block, abort-multipart rule), the queues (redrive policy,
   visibility timeout, encryption), the IAM roles (exact least-privilege
   statements), the launch templates' user data (no secret in it, the
   environment the binaries need).
3. Properties that moto accepts but does not apply are checked in the
   template instead, and listed too.

Tools (pinned in tests/deploy/requirements*.txt) are found through
ANB_CFN_LINT, ANB_CHECKOV, ANB_MOTO_SERVER, else next to this Python.
"""

from __future__ import annotations

import ast
import base64
import copy
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "aws" / "template.yaml"
DEPLOY_SH = ROOT / "deploy" / "aws" / "deploy.sh"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
STACK = "anb-emulated"

# --------------------------------------------------------------------------
# What moto 5.2.5 cannot do with this template: the one list, with reasons.
# test_emulator_gaps_are_current fails when moto learns one of these, so the
# list never hides more than it must.
EMULATOR_GAPS = {
    # Resource types moto's CloudFormation does not implement (it would skip
    # them silently). They are removed; a Ref/GetAtt/${} to one of them in a
    # kept resource becomes a placeholder ARN (so IAM statements keep their
    # shape), and outputs that name them are removed.
    "resource_types": {
        "AWS::SecretsManager::Secret": "moto's CloudFormation has no Secrets Manager resources",
        "AWS::SecretsManager::SecretTargetAttachment": "moto's CloudFormation has no Secrets Manager resources",
        "AWS::S3::BucketPolicy": "not implemented by moto's CloudFormation (checked in the template instead)",
        "AWS::AutoScaling::ScalingPolicy": "not implemented by moto's CloudFormation (checked in the template instead)",
        "AWS::CloudWatch::Alarm": "not implemented by moto's CloudFormation (checked in the template instead)",
    },
    # Attributes moto cannot return (its Fn::GetAtt raises NotImplemented);
    # replaced by a placeholder of the real shape (only the dashboard uses it
    # once the alarms and scaling policies are left out).
    "attributes": {
        ("AWS::ElasticLoadBalancingV2::LoadBalancer", "LoadBalancerFullName"): "moto: GetAtt not implemented",
    },
    # Types whose Ref moto answers with its internal object instead of the
    # name (and whose name it will not take from the template): a property
    # that is just a Ref to one is removed from the referring resource.
    "refs": {
        "AWS::RDS::DBParameterGroup": "moto's DBParameterGroup has no physical id: Ref returns an object and "
        "creating the DB instance crashes, so the instance is created without DBParameterGroupName",
    },
    # Resources whose Condition is false in every emulated run (no
    # certificate is given): moto's stack update "modifies" them although
    # they were never created, and crashes.
    "conditional_resources": {
        "HttpsListener": "Condition HasCertificate is false in the stacks that are updated; moto's update "
        "path tries to modify the never-created listener (test_https_listener_and_redirect_with_a_certificate "
        "keeps it)",
    },
    # Parameter defaults moto cannot resolve.
    "parameter_defaults": {
        "LatestAmiId": "moto resolves an SSM-typed parameter's default even when a value is given, "
        "and has no /aws/service/debian public parameters (names under /aws are reserved, so the "
        "test cannot create it): the default points at a parameter the test creates",
    },
    # Properties moto accepts but does not apply: checked in the template.
    "ignored_properties": {
        ("AWS::S3::Bucket", "PublicAccessBlockConfiguration"): "moto's S3 bucket model applies only encryption and tags",
        ("AWS::S3::Bucket", "LifecycleConfiguration"): "moto's S3 bucket model applies only encryption and tags",
        ("AWS::S3::Bucket", "VersioningConfiguration"): "moto's S3 bucket model applies only encryption and tags",
        ("AWS::IAM::Role", "ManagedPolicyArns"): "moto's IAM role model attaches inline policies only",
        ("AWS::RDS::DBInstance", "VPCSecurityGroups"): "moto's DB instance model puts every instance in one "
        "default security group",
        ("AWS::SQS::Queue", "RedriveAllowPolicy"): "moto stores it but GetQueueAttributes does not return it",
        ("AWS::ElasticLoadBalancingV2::TargetGroup", "TargetGroupAttributes"): "moto's target group model "
        "ignores them (deregistration delay stays at its default 300 s)",
    },
}
# And quirks of the answers and of deploy.sh's path through moto:
# - an inline role policy created by moto's CloudFormation comes back from
#   GetRolePolicy as a Python repr, not JSON (parsed as such below);
DEPLOY_SH_GAPS = {
    "outputs": "a stack created or updated through a change set (what `aws cloudformation deploy` "
    "does) has no outputs in moto, so deploy.sh's last step reports 'no AlbUrl output'",
    "endpoint": "moto reads a TemplateURL on its own endpoint only when the URL says 'localhost', "
    "so deploy.sh talks to http://localhost:PORT rather than 127.0.0.1",
    "LatestAmiId": "on an update moto re-resolves the previous (already resolved) value of an "
    "SSM-typed parameter, so deploy.sh passes LatestAmiId explicitly",
}
EMULATOR_AMI_PARAMETER = "/anb-emulator/debian-12-ami"

PARAMETERS = {
    "PackageBucket": "anb-emulator-packages",
    "PackageKey": "packages/anb_0.1.0_amd64-0123456789abcdef.deb",
    "DbDeletionProtection": "false",
    "MaxAttempts": "4",  # not the default, to see it travel to the redrive policy
    "JobVisibility": "36",
    "MailFrom": "no-reply@showcase.example",
}


# ------------------------------------------------------------------ helpers
def tool(env_name: str, exe: str) -> str:
    """A tool from its environment variable, next to this Python, or on PATH."""
    path = os.environ.get(env_name)
    if path:
        return path
    beside = Path(sys.executable).parent / exe
    if beside.exists():
        return str(beside)
    found = shutil.which(exe)
    if not found:
        pytest.fail(f"{exe} not found: set {env_name} or install it (see tests/deploy/README.md)")
    return found


def load_template() -> dict:
    tpl, matches = decode(str(TEMPLATE))
    assert not matches, f"template does not parse: {matches}"
    # Plain JSON types (cfn-lint's decoder returns its own node classes).
    return json.loads(json.dumps(tpl))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refs_in(node, found: set[str]) -> set[str]:
    """Every logical id a node names through Ref, GetAtt or ${} in Sub."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found.update(m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text))
                if isinstance(value, list):
                    refs_in(value[1], found)
            else:
                refs_in(value, found)
    elif isinstance(node, list):
        for item in node:
            refs_in(item, found)
    return found


def placeholder(resource_type: str, logical_id: str, attribute: str | None = None) -> str:
    if attribute == "LoadBalancerFullName":
        return f"app/emulated-{logical_id}/0123456789abcdef"
    if attribute == "TargetGroupFullName":
        return f"targetgroup/emulated-{logical_id}/0123456789abcdef"
    service = resource_type.split("::")[1].lower()
    if service == "secretsmanager":
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:emulated-{logical_id}-AbCdEf"
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:emulated/{logical_id}"


def emulator_variant(tpl: dict, updatable: bool = True) -> tuple[dict, list[str]]:
    """The template less what moto cannot create, and a report of each change.

    updatable=False keeps the conditional resources (for a stack that is
    created once and never updated)."""
    tpl = copy.deepcopy(tpl)
    resources = tpl["Resources"]
    types = {lid: r["Type"] for lid, r in resources.items()}
    dropped = {lid for lid, t in types.items() if t in EMULATOR_GAPS["resource_types"]}
    for lid in EMULATOR_GAPS["conditional_resources"] if updatable else ():
        assert resources[lid].get("Condition"), f"{lid} is not conditional"
        del resources[lid]
        del types[lid]
    bad_attrs = {
        (lid, attr) for lid, t in types.items() for (gt, attr) in EMULATOR_GAPS["attributes"] if gt == t
    }
    report = [
        f"left out {lid} ({types[lid]}): {EMULATOR_GAPS['resource_types'][types[lid]]}" for lid in sorted(dropped)
    ] + [f"left out {lid}: {reason}" for lid, reason in EMULATOR_GAPS["conditional_resources"].items() if updatable]
    named = {lid for lid, t in types.items() if t in EMULATOR_GAPS["refs"]}
    substituted: set[str] = set()

    def sub_text(text: str) -> str:
        def repl(m: re.Match) -> str:
            name = m.group(1)
            lid, _, attr = name.partition(".")
            if lid in dropped or (lid, attr) in bad_attrs:
                substituted.add(name)
                return placeholder(types[lid], lid, attr or None)
            return m.group(0)

        return re.sub(r"\$\{([^!}][^}]*)\}", repl, text)

    def rewrite(node):
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in dropped:
                substituted.add(node["Ref"])
                return placeholder(types[node["Ref"]], node["Ref"])
            if set(node) == {"Fn::GetAtt"}:
                value = node["Fn::GetAtt"]
                lid, attr = value if isinstance(value, list) else value.split(".", 1)
                if lid in dropped or (lid, attr) in bad_attrs:
                    substituted.add(f"{lid}.{attr}")
                    return placeholder(types[lid], lid, attr)
            if set(node) == {"Fn::Sub"}:
                value = node["Fn::Sub"]
                if isinstance(value, list):
                    return {"Fn::Sub": [sub_text(value[0]), rewrite(value[1])]}
                return {"Fn::Sub": sub_text(value)}
            return {k: rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    for lid in dropped:
        del resources[lid]
    for lid, res in resources.items():
        depends = res.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        # A Ref replaced by a name no longer orders creation: say it outright.
        kept = [d for d in depends if d not in dropped] + sorted(refs_in(res, set()) & set(named))
        if kept:
            res["DependsOn"] = kept
        else:
            res.pop("DependsOn", None)
        for prop, value in list(res.get("Properties", {}).items()):
            if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in named:
                del res["Properties"][prop]
                report.append(f"removed {lid}.{prop} (Ref {value['Ref']}): {EMULATOR_GAPS['refs'][types[value['Ref']]]}")
        resources[lid] = rewrite(res)
    for name in sorted(tpl.get("Outputs", {})):
        names = refs_in(tpl["Outputs"][name], set())
        if names & dropped:
            del tpl["Outputs"][name]
            report.append(f"left out output {name}: names {', '.join(sorted(names & dropped))}")
        else:
            tpl["Outputs"][name] = rewrite(tpl["Outputs"][name])
    for name in sorted(substituted):
        report.append(f"placeholder for ${{{name}}} where kept resources name it")
    for param, reason in EMULATOR_GAPS["parameter_defaults"].items():
        tpl["Parameters"][param]["Default"] = EMULATOR_AMI_PARAMETER
        report.append(f"parameter {param} defaults to {EMULATOR_AMI_PARAMETER}: {reason}")
    for (rtype, prop), reason in EMULATOR_GAPS["ignored_properties"].items():
        report.append(f"not applied by moto, checked in the template: {rtype}.{prop} ({reason})")
    return tpl, report


def statements(policy: dict) -> set[tuple[str, str, str]]:
    """(action, resource, condition) triples of an Allow policy, flattened."""
    out = set()
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow"
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        condition = json.dumps(st.get("Condition", {}), sort_keys=True)
        out.update((a, r, condition) for a in actions for r in resources)
    return out


# ------------------------------------------------------------ static checks
def test_cfn_lint_reports_nothing():
    run = subprocess.run(
        [tool("ANB_CFN_LINT", "cfn-lint"), "--format", "parseable", str(TEMPLATE)],
        capture_output=True,
        text=True,
    )
    findings = [line for line in run.stdout.splitlines() if line.strip()]
    print(f"cfn-lint: {len(findings)} findings")
    assert run.returncode == 0 and not findings, run.stdout + run.stderr


def test_checkov_reports_no_failed_check():
    run = subprocess.run(
        [
            tool("ANB_CHECKOV", "checkov"),
            "--file", str(TEMPLATE),
            "--framework", "cloudformation",
            "--skip-download",  # no network: no guideline download from the vendor
            "--output", "json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    assert run.stdout.strip(), run.stderr
    report = json.loads(run.stdout)
    summary = report["summary"]
    failed = report["results"].get("failed_checks", [])
    skipped = report["results"].get("skipped_checks", [])
    print(
        f"checkov: {summary['passed']} passed, {summary['failed']} failed, "
        f"{summary['skipped']} skipped (each with its reason), {summary['parsing_errors']} parsing errors"
    )
    for check in skipped:
        print(f"  skipped {check['check_id']} on {check['resource']}: {check['check_result'].get('suppress_comment')}")
    assert summary["parsing_errors"] == 0
    assert not failed, [(c["check_id"], c["resource"]) for c in failed]
    for check in skipped:
        assert (check["check_result"].get("suppress_comment") or "").strip(), f"{check['check_id']} skipped without a reason"


def test_every_cfn_lint_suppression_has_a_reason():
    lines = TEMPLATE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "ignore_checks" in line:
            ids = re.findall(r"[EWI]\d{4}", line)
            above = "\n".join(lines[max(0, i - 8) : i])
            for rule in ids:
                assert re.search(rf"#\s*{rule}:\s*\S", above), f"{rule} is ignored without a '# {rule}: reason' comment"
    assert "ignore_checks" not in json.dumps(load_template().get("Metadata", {})), "no template-wide suppression"


def test_template_settings_the_emulator_does_not_apply():
    tpl = load_template()
    res = tpl["Resources"]
    bucket = res["VideoBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert {"Id": "abort-incomplete-multipart-uploads", "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}} in rules
    assert bucket["VersioningConfiguration"]["Fn::If"][0] == "VersioningOn"
    assert tpl["Parameters"]["BucketVersioning"]["Default"] == "false"

    # Queue and target group settings moto does not apply.
    dlq = res["DeadLetterQueue"]["Properties"]
    assert dlq["RedriveAllowPolicy"] == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [{"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-videos"}],
    }
    assert res["JobQueue"]["Properties"]["QueueName"] == {"Fn::Sub": "${AWS::StackName}-videos"}
    tg = res["WebTargetGroup"]["Properties"]
    assert {"Key": "deregistration_delay.timeout_seconds", "Value": "3300"} in tg["TargetGroupAttributes"]

    # TLS-only bucket policy.
    policy = res["VideoBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert policy == [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [{"Fn::GetAtt": ["VideoBucket", "Arn"]}, {"Fn::Sub": "${VideoBucket.Arn}/*"}],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]

    # Operators get in through SSM only: the managed policy on both roles, no key pair anywhere.
    for role in ("WebRole", "WorkerRole"):
        assert res[role]["Properties"]["ManagedPolicyArns"] == [
            {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}
        ]
    for lt in ("WebLaunchTemplate", "WorkerLaunchTemplate"):
        data = res[lt]["Properties"]["LaunchTemplateData"]
        assert "KeyName" not in data
        assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert "KeyName" not in tpl["Parameters"]

    # Secrets: generated, attached to the instance, password resolved at deploy time only.
    db_secret = res["DatabaseSecret"]["Properties"]["GenerateSecretString"]
    assert json.loads(db_secret["SecretStringTemplate"]) == {"username": "anb", "dbname": "anb"}
    assert db_secret["GenerateStringKey"] == "password"
    assert res["DatabaseSecretAttachment"]["Properties"] == {
        "SecretId": {"Ref": "DatabaseSecret"}, "TargetId": {"Ref": "Database"}, "TargetType": "AWS::RDS::DBInstance",
    }
    for key in ("JwtSecret", "KeyringSecret"):
        generated = res[key]["Properties"]["GenerateSecretString"]
        assert "SecretStringTemplate" not in generated and generated["PasswordLength"] >= 32
    db = res["Database"]["Properties"]
    assert db["MasterUserPassword"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${DatabaseSecret}:SecretString:password}}"
    }
    assert (db["Engine"], db["EngineVersion"], db["MultiAZ"], db["StorageEncrypted"], db["PubliclyAccessible"]) == (
        "postgres", "15", True, True, False)
    assert db["DeletionProtection"] == {"Ref": "DbDeletionProtection"}
    assert db["VPCSecurityGroups"] == [{"Ref": "DatabaseSecurityGroup"}]
    assert db["DBSubnetGroupName"] == {"Ref": "DatabaseSubnetGroup"}
    # TLS required by the server (moto's copy loses the group: EMULATOR_GAPS["refs"]).
    assert db["DBParameterGroupName"] == {"Ref": "DatabaseParameters"}
    params = res["DatabaseParameters"]["Properties"]
    assert (params["Family"], params["Parameters"]) == ("postgres15", {"rds.force_ssl": "1"})

    # HTTPS only with a certificate, and then HTTP redirects to it.
    https = res["HttpsListener"]
    assert https["Condition"] == "HasCertificate"
    assert (https["Properties"]["Port"], https["Properties"]["Protocol"]) == (443, "HTTPS")
    http_actions = res["HttpListener"]["Properties"]["DefaultActions"]["Fn::If"]
    assert http_actions[0] == "HasCertificate"
    assert http_actions[1][0]["RedirectConfig"]["StatusCode"] == "HTTP_301"
    assert http_actions[2][0]["Type"] == "forward"


def test_scaling_and_alarms_in_the_template():
    tpl = load_template()
    res = tpl["Resources"]

    web = res["WebRequestScaling"]["Properties"]["TargetTrackingConfiguration"]
    assert web["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    assert web["TargetValue"] == {"Ref": "WebRequestsPerTarget"}
    assert tpl["Parameters"]["WebRequestsPerTarget"]["Default"] == 60000
    cpu = res["WebCpuScaling"]["Properties"]["TargetTrackingConfiguration"]
    assert (cpu["PredefinedMetricSpecification"]["PredefinedMetricType"], cpu["TargetValue"]) == (
        "ASGAverageCPUUtilization", 60)

    # Worker: backlog per instance by metric math, target = measured rate x acceptable wait.
    worker = res["WorkerBacklogScaling"]["Properties"]["TargetTrackingConfiguration"]
    metrics = {m["Id"]: m for m in worker["CustomizedMetricSpecification"]["Metrics"]}
    assert metrics["visible"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert metrics["inservice"]["MetricStat"]["Metric"]["MetricName"] == "GroupInServiceInstances"
    assert metrics["backlogperinstance"]["Expression"] == "visible / inservice"
    assert [m["Id"] for m in metrics.values() if m["ReturnData"]] == ["backlogperinstance"]
    assert worker["TargetValue"] == {"Ref": "WorkerBacklogPerInstance"}
    # docs/benchmarks.md: 6.13 videos/min per 2-core worker (2 jobs at once); 5 minutes of wait.
    bench = (ROOT / "docs" / "benchmarks.md").read_text()
    measured = float(re.search(r"^\| 2 \| ([0-9.]+) \|", bench, re.M).group(1))
    assert tpl["Parameters"]["WorkerBacklogPerInstance"]["Default"] == int(measured * 5)
    collected = res["WorkerGroup"]["Properties"]["MetricsCollection"][0]["Metrics"]
    assert "GroupInServiceInstances" in collected

    alarms = {lid: r["Properties"] for lid, r in res.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == {"DeadLetterAlarm", "OldestJobAlarm", "Alb5xxRateAlarm", "UnhealthyHostAlarm",
                           "NoHealthyHostAlarm", "AlbOwn5xxAlarm", "LatencyAlarm",
                           "DatabaseCpuAlarm", "DatabaseStorageAlarm"}
    # Each new dead letter, as a rate: a period without one is OK again, so
    # the next failure notifies anew (a depth alarm stayed in ALARM).
    dead = alarms["DeadLetterAlarm"]
    assert (dead["Namespace"], dead["MetricName"], dead["Statistic"]) == ("ANB/Worker", "jobs_dead_lettered", "Sum")
    assert dead["Dimensions"] == [{"Name": "Service", "Value": "anb-worker"}]
    assert (dead["Threshold"], dead["ComparisonOperator"], dead["TreatMissingData"]) == (0, "GreaterThanThreshold", "notBreaching")
    assert "NumberOfMessagesSent" not in json.dumps(dead)
    metrics_rs = (ROOT / "adapters" / "metrics" / "src" / "lib.rs").read_text()
    assert 'JOBS_DEAD_LETTERED: &str = "jobs_dead_lettered"' in metrics_rs, "the alarm reads a metric the worker emits"
    healthy = alarms["NoHealthyHostAlarm"]
    assert (healthy["MetricName"], healthy["Statistic"], healthy["Threshold"], healthy["ComparisonOperator"],
            healthy["TreatMissingData"]) == ("HealthyHostCount", "Minimum", 1, "LessThanThreshold", "breaching")
    assert alarms["AlbOwn5xxAlarm"]["MetricName"] == "HTTPCode_ELB_5XX_Count"
    latency = alarms["LatencyAlarm"]
    assert (latency["MetricName"], latency["ExtendedStatistic"], latency["Threshold"]) == ("TargetResponseTime", "p95", 2)
    assert alarms["OldestJobAlarm"]["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert alarms["OldestJobAlarm"]["Threshold"] == 900
    rate = {m["Id"]: m for m in alarms["Alb5xxRateAlarm"]["Metrics"]}
    assert rate["errors"]["MetricStat"]["Metric"]["MetricName"] == "HTTPCode_Target_5XX_Count"
    assert rate["requests"]["MetricStat"]["Metric"]["MetricName"] == "RequestCount"
    assert alarms["Alb5xxRateAlarm"]["Threshold"] == 1
    assert alarms["UnhealthyHostAlarm"]["MetricName"] == "UnHealthyHostCount"
    assert (alarms["DatabaseCpuAlarm"]["MetricName"], alarms["DatabaseCpuAlarm"]["Threshold"]) == ("CPUUtilization", 80)
    assert alarms["DatabaseStorageAlarm"]["Threshold"] == 2 * 1024**3
    for props in alarms.values():
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]

    # A group that cannot launch or terminate an instance tells on-call.
    for group in ("WebGroup", "WorkerGroup"):
        notes = res[group]["Properties"]["NotificationConfigurations"]
        assert notes == [{"TopicARN": {"Ref": "AlarmTopic"}, "NotificationTypes": [
            "autoscaling:EC2_INSTANCE_LAUNCH_ERROR", "autoscaling:EC2_INSTANCE_TERMINATE_ERROR"]}]


def test_day_two_settings_in_the_template():
    res = load_template()["Resources"]
    # What a mistaken update or delete must not take: jobs, keys, logs.
    for lid in ("JobQueue", "DeadLetterQueue", "DatabaseSecret", "JwtSecret", "KeyringSecret", "WebLogGroup", "WorkerLogGroup",
                "VideoBucket"):
        assert (res[lid].get("DeletionPolicy"), res[lid].get("UpdateReplacePolicy")) == ("Retain", "Retain"), lid
    # A dead letter keeps its first enqueue time: the DLQ keeps it longer than the queue would.
    queue = res["JobQueue"]["Properties"]["MessageRetentionPeriod"]
    dlq = res["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    assert queue < dlq == 14 * 86400, (queue, dlq)
    # Maintenance (which fails a Multi-AZ instance over) and backups at a set time, apart.
    db = res["Database"]["Properties"]
    assert re.fullmatch(r"[a-z]{3}:\d\d:\d\d-[a-z]{3}:\d\d:\d\d", db["PreferredMaintenanceWindow"])
    assert re.fullmatch(r"\d\d:\d\d-\d\d:\d\d", db["PreferredBackupWindow"])
    # The deregistration delay covers the largest upload at the slowest rate accepted, plus the drain.
    attributes = {a["Key"]: a["Value"] for a in res["WebTargetGroup"]["Properties"]["TargetGroupAttributes"]}
    web_env = re.search(r"ANB_UPLOAD_MIN_RATE=(\d+)", json.dumps(res["WebLaunchTemplate"]))
    assert web_env, "the web servers' minimum upload rate is set"
    slowest = 100 * 1024 * 1024 / int(web_env.group(1))
    assert slowest + 30 <= int(attributes["deregistration_delay.timeout_seconds"]) <= 3600, attributes
    # Units that never stay failed.
    for unit in ("anb-web.service", "anb-worker.service"):
        text = (ROOT / "deploy" / "systemd" / unit).read_text()
        assert "StartLimitIntervalSec=0" in text.splitlines(), unit


# ------------------------------------------------------------ moto server
@pytest.fixture(scope="module")
def moto(request):
    """moto in server mode on a free loopback port, stopped whatever happens."""
    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"anb-deploy-moto-{port}.log", "w")
    proc = subprocess.Popen(
        [tool("ANB_MOTO_SERVER", "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop():
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)

    request.addfinalizer(stop)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"moto_server did not start:\n{Path(log.name).read_text()}")
            time.sleep(0.2)
    return endpoint


@pytest.fixture(scope="module")
def aws(moto):
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return lambda service: session.client(service, endpoint_url=moto)


def create_stack(aws, name: str, parameters: dict, updatable: bool = True) -> dict:
    """Create the emulator variant as stack NAME and wait for CREATE_COMPLETE."""
    ssm = aws("ssm")
    try:
        ssm.get_parameter(Name=EMULATOR_AMI_PARAMETER)
    except ssm.exceptions.ParameterNotFound:
        image = aws("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ssm.put_parameter(Name=EMULATOR_AMI_PARAMETER, Value=image, Type="String")
    variant, report = emulator_variant(load_template(), updatable)
    cfn = aws("cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(variant),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    deadline = time.monotonic() + 120
    while True:
        desc = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if desc["StackStatus"] == "CREATE_COMPLETE":
            break
        if desc["StackStatus"].endswith("FAILED") or "ROLLBACK" in desc["StackStatus"] or time.monotonic() > deadline:
            events = cfn.describe_stack_events(StackName=name)["StackEvents"]
            pytest.fail(f"stack {desc['StackStatus']}: {[e.get('ResourceStatusReason') for e in events][:10]}")
        time.sleep(0.5)
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
    return {"physical": physical, "outputs": outputs, "report": report, "variant": variant}


@pytest.fixture(scope="module")
def stack(aws):
    aws("s3").create_bucket(Bucket=PARAMETERS["PackageBucket"])
    aws("s3").put_object(Bucket=PARAMETERS["PackageBucket"], Key=PARAMETERS["PackageKey"], Body=b"!<arch>\n")
    created = create_stack(aws, STACK, PARAMETERS)
    print("\nWhat the emulator (moto 5.2.5) could not create or apply:")
    for line in created["report"]:
        print("  -", line)
    return created


def test_emulator_gaps_are_current():
    """Each listed gap is still a gap in the installed moto (so the list can shrink)."""
    from moto.cloudformation.parsing import get_model_map

    supported = get_model_map()
    types_in_template = {r["Type"] for r in load_template()["Resources"].values()}
    missing = {t for t in types_in_template if t not in supported}
    assert missing == set(EMULATOR_GAPS["resource_types"]), (
        f"moto lacks {sorted(missing)}; the list says {sorted(EMULATOR_GAPS['resource_types'])}"
    )


def test_stack_creates_everything_else(stack):
    created = set(stack["physical"])
    expected = set(stack["variant"]["Resources"])
    assert expected <= created, sorted(expected - created)
    assert stack["outputs"]["AlbUrl"].startswith("http://")


def test_bucket_is_encrypted_private_and_aborts_multipart_uploads(stack, aws):
    s3 = aws("s3")
    bucket = stack["outputs"]["VideoBucketName"]
    s3.head_bucket(Bucket=bucket)
    sse = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert sse["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    # The two settings below are applied by AWS from the template; moto 5.2.5
    # ignores them (EMULATOR_GAPS) and they are checked in the template by
    # test_template_settings_the_emulator_does_not_apply. If a moto version
    # applies them, the live values must be right.
    try:
        pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except s3.exceptions.ClientError:
        assert ("AWS::S3::Bucket", "PublicAccessBlockConfiguration") in EMULATOR_GAPS["ignored_properties"]
    else:
        assert all(pab.values()), pab
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except s3.exceptions.ClientError:
        assert ("AWS::S3::Bucket", "LifecycleConfiguration") in EMULATOR_GAPS["ignored_properties"]
    else:
        assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 for r in rules), rules


def test_queues_redrive_and_visibility(stack, aws):
    sqs = aws("sqs")
    job_url = stack["outputs"]["JobQueueUrl"]
    dlq_url = stack["outputs"]["DeadLetterQueueUrl"]
    job = sqs.get_queue_attributes(QueueUrl=job_url, AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    assert job_url.endswith(f"/{STACK}-videos") and dlq_url.endswith(f"/{STACK}-videos-dlq")
    redrive = json.loads(job["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == int(PARAMETERS["MaxAttempts"])
    assert int(job["VisibilityTimeout"]) == int(PARAMETERS["JobVisibility"])
    assert int(job["ReceiveMessageWaitTimeSeconds"]) == 20
    assert int(dlq["MessageRetentionPeriod"]) == 14 * 24 * 3600
    for attrs in (job, dlq):
        assert attrs.get("SqsManagedSseEnabled") == "true"
    if "RedriveAllowPolicy" in dlq:
        allow = json.loads(dlq["RedriveAllowPolicy"])
        assert allow == {"redrivePermission": "byQueue", "sourceQueueArns": [job["QueueArn"]]}
    else:
        assert ("AWS::SQS::Queue", "RedriveAllowPolicy") in EMULATOR_GAPS["ignored_properties"]


def test_instance_roles_have_exactly_the_stated_permissions(stack, aws):
    iam = aws("iam")
    phys = stack["physical"]
    bucket_arn = f"arn:aws:s3:::{stack['outputs']['VideoBucketName']}"
    queue_arn = aws("sqs").get_queue_attributes(
        QueueUrl=stack["outputs"]["JobQueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    dlq_arn = aws("sqs").get_queue_attributes(
        QueueUrl=stack["outputs"]["DeadLetterQueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    db_secret = placeholder("AWS::SecretsManager::Secret", "DatabaseSecret")
    jwt_secret = placeholder("AWS::SecretsManager::Secret", "JwtSecret")
    keyring_secret = placeholder("AWS::SecretsManager::Secret", "KeyringSecret")
    package = f"arn:aws:s3:::{PARAMETERS['PackageBucket']}/{PARAMETERS['PackageKey']}"
    stack_id = aws("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]["StackId"]
    log_group = {
        tier: aws("logs").describe_log_groups(logGroupNamePrefix=f"/anb/{STACK}/{tier}")["logGroups"][0]["arn"]
        for tier in ("web", "worker")
    }
    none = json.dumps({}, sort_keys=True)

    def ns(namespace):
        return json.dumps({"StringEquals": {"cloudwatch:namespace": namespace}}, sort_keys=True)

    def common(tier, namespace, secrets):
        return {
            *{("secretsmanager:GetSecretValue", s, none) for s in secrets},
            ("cloudwatch:PutMetricData", "*", ns(namespace)),
            ("logs:CreateLogStream", log_group[tier], none),
            ("logs:PutLogEvents", log_group[tier], none),
            ("s3:GetObject", package, none),
            ("cloudformation:SignalResource", stack_id, none),
        }

    expected = {
        "WebRole": {
            *{(a, f"{bucket_arn}/{p}/*", none)
              for a in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
              for p in ("uploaded", "processed")},
            ("sqs:SendMessage", queue_arn, none),
            ("sqs:GetQueueAttributes", queue_arn, none),
            # Verification mail, as the configured sender only.
            ("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/*",
             json.dumps({"StringEquals": {"ses:FromAddress": PARAMETERS["MailFrom"]}}, sort_keys=True)),
            *common("web", "ANB/Backend", [db_secret, jwt_secret, keyring_secret]),
        },
        "WorkerRole": {
            ("s3:GetObject", f"{bucket_arn}/uploaded/*", none),
            *{(a, f"{bucket_arn}/processed/*", none)
              for a in ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")},
            *{(a, queue_arn, none) for a in ("sqs:ReceiveMessage", "sqs:DeleteMessage",
                                             "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
                                             "sqs:SendMessage")},
            *{(a, dlq_arn, none) for a in ("sqs:GetQueueUrl", "sqs:ReceiveMessage")},
            *common("worker", "ANB/Worker", [db_secret]),
            # Scale-in protection of its own group while a job runs.
            ("autoscaling:SetInstanceProtection",
             f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/*",
             json.dumps({"StringEquals": {"autoscaling:ResourceTag/aws:cloudformation:stack-name": STACK,
                                          "autoscaling:ResourceTag/aws:cloudformation:logical-id": "WorkerGroup"}},
                        sort_keys=True)),
            ("autoscaling:DescribeAutoScalingInstances", "*", none),
        },
    }
    for logical, want in expected.items():
        role = phys[logical]
        names = iam.list_role_policies(RoleName=role)["PolicyNames"]
        got = set()
        for name in names:
            doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            if isinstance(doc, str):
                try:
                    doc = json.loads(doc)
                except json.JSONDecodeError:
                    doc = ast.literal_eval(doc)  # moto's quirk (see EMULATOR_GAPS)
            got |= statements(doc)
        assert got == want, (
            f"{logical}: extra {sorted(got - want)}, missing {sorted(want - got)}"
        )
        trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
        trust = trust if isinstance(trust, dict) else json.loads(trust)
        assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ec2.amazonaws.com"}]

    web_actions = {a for a, _, _ in expected["WebRole"]}
    worker_actions = {a for a, _, _ in expected["WorkerRole"]}
    assert "sqs:ReceiveMessage" not in web_actions and "sqs:DeleteMessage" not in web_actions
    assert "sqs:SendMessage" in worker_actions  # the worker relays the outbox
    assert not any(r in (jwt_secret, keyring_secret) for _, r, _ in expected["WorkerRole"])  # the worker never signs tokens
    assert not any(a.endswith(":*") or a == "*" for a in web_actions | worker_actions)

    for profile, role in (("WebInstanceProfile", "WebRole"), ("WorkerInstanceProfile", "WorkerRole")):
        roles = iam.get_instance_profile(InstanceProfileName=phys[profile])["InstanceProfile"]["Roles"]
        assert [r["RoleName"] for r in roles] == [phys[role]]


def user_data(aws, stack, logical):
    versions = aws("ec2").describe_launch_template_versions(LaunchTemplateId=stack["physical"][logical])
    data = versions["LaunchTemplateVersions"][-1]["LaunchTemplateData"]
    return base64.b64decode(data["UserData"]).decode(), data


def env_file(script: str) -> dict[str, str]:
    body = re.search(r"cat > /etc/anb/anb.env <<'ENV'\n(.*?)\nENV\n", script, re.S).group(1)
    return dict(line.split("=", 1) for line in body.splitlines())


def test_user_data_installs_the_package_and_holds_no_secret(stack, aws):
    outputs = stack["outputs"]
    for logical, unit in (("WebLaunchTemplate", "anb-web.service"), ("WorkerLaunchTemplate", "anb-worker.service")):
        script, data = user_data(aws, stack, logical)
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        assert "KeyName" not in data
        check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert check.returncode == 0, check.stderr
        assert f"s3://{PARAMETERS['PackageBucket']}/{PARAMETERS['PackageKey']}" in script
        assert "apt-get install -y -q /tmp/anb.deb" in script
        assert f"systemctl enable {unit}" in script and f"systemctl restart {unit}" in script
        # EMF in a file of its own (whole lines, never torn by a log line), shipped by the agent.
        assert f'"file_path": "/var/log/anb/{unit.split(".")[0]}-metrics.log"' in script
        assert "${" not in script.replace("${!", ""), "an unresolved ${} left in user data"
        assert not re.search(r"(?i)password|BEGIN .*PRIVATE KEY|ANB_DATABASE_URL|ANB_JWT_SECRET=", script)
        env = env_file(script)
        common = {
            "AWS_REGION": REGION,
            "ANB_DATA_DIR": "/var/lib/anb",
            "ANB_STORAGE": "s3",
            "ANB_S3_BUCKET": outputs["VideoBucketName"],
            "ANB_QUEUE": "sqs",
            "ANB_SQS_QUEUE_URL": outputs["JobQueueUrl"],
            "ANB_MAX_ATTEMPTS": PARAMETERS["MaxAttempts"],
            "ANB_JOB_VISIBILITY": PARAMETERS["JobVisibility"],
            "ANB_DATABASE_SECRET": placeholder("AWS::SecretsManager::Secret", "DatabaseSecret"),
            "ANB_METRICS": "emf",
            "ANB_LOG_FORMAT": "json",
            "RUST_LOG": "info",
        }
        if unit == "anb-web.service":
            assert env == {
                **common,
                "ANB_HTTP_ADDR": "0.0.0.0:8080",
                "ANB_WORKERS": "0",
                "ANB_BEHIND_PROXY": "true",
                "ANB_PUBLIC_BASE_URL": outputs["AlbUrl"],
                "ANB_JWT_SECRET_ID": placeholder("AWS::SecretsManager::Secret", "JwtSecret"),
                "ANB_KEYRING_SECRET_ID": placeholder("AWS::SecretsManager::Secret", "KeyringSecret"),
                "ANB_EMF_FILE": "/var/log/anb/anb-web-metrics.log",
                # Above the ALB's 60 s idle timeout.
                "ANB_HEADER_TIMEOUT": "65",
                "ANB_UPLOAD_MIN_RATE": "32768",
                # Verification mail through SES; only verified addresses vote.
                "ANB_MAIL": "ses",
                "ANB_MAIL_FROM": f"ANB Rising Stars <{PARAMETERS['MailFrom']}>",
                "ANB_VOTE_REQUIRES_VERIFIED_EMAIL": "true",
                "ANB_SIGNUP_PER_ADDRESS": "10",
                "ANB_SIGNUP_PER_NETWORK": "50",
            }
        else:
            assert env == {**common, "ANB_EMF_FILE": "/var/log/anb/anb-worker-metrics.log", "ANB_SCALE_IN_PROTECTION": "true"}


def test_security_groups(stack, aws):
    ec2 = aws("ec2")
    phys = stack["physical"]
    groups = {
        lid: ec2.describe_security_groups(GroupIds=[phys[lid]])["SecurityGroups"][0]
        for lid in ("AlbSecurityGroup", "WebSecurityGroup", "WorkerSecurityGroup", "DatabaseSecurityGroup")
    }

    def ingress(lid):
        out = set()
        for p in groups[lid]["IpPermissions"]:
            for r in p.get("IpRanges", []):
                out.add((p.get("FromPort"), r["CidrIp"]))
            for g in p.get("UserIdGroupPairs", []):
                out.add((p.get("FromPort"), g["GroupId"]))
        return out

    assert ingress("AlbSecurityGroup") == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}
    assert ingress("WebSecurityGroup") == {(8080, phys["AlbSecurityGroup"])}
    assert ingress("WorkerSecurityGroup") == set()
    assert ingress("DatabaseSecurityGroup") == {(5432, phys["WebSecurityGroup"]), (5432, phys["WorkerSecurityGroup"])}


def test_load_balancer_health_check_and_drain(stack, aws):
    elb = aws("elbv2")
    tg = elb.describe_target_groups(TargetGroupArns=[stack["physical"]["WebTargetGroup"]])["TargetGroups"][0]
    assert (tg["Port"], tg["HealthCheckPath"], tg["HealthyThresholdCount"], tg["UnhealthyThresholdCount"]) == (
        8080, "/api/health", 2, 2)
    attrs = {a["Key"]: a["Value"] for a in elb.describe_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"])["Attributes"]}
    if attrs["deregistration_delay.timeout_seconds"] != "3300":
        # moto ignores TargetGroupAttributes; the template test checks the 3,300 s.
        assert ("AWS::ElasticLoadBalancingV2::TargetGroup", "TargetGroupAttributes") in EMULATOR_GAPS[
            "ignored_properties"]


def test_the_load_balancer_does_not_forward_metrics(stack, aws):
    """GET /metrics is for scrapers on the instances' port: the listener answers 404 itself."""
    elb = aws("elbv2")
    rules = elb.describe_rules(ListenerArn=stack["physical"]["HttpListener"])["Rules"]
    metrics = [r for r in rules if any(
        c.get("Field") == "path-pattern" and "/metrics" in (c.get("PathPatternConfig", {}).get("Values") or c.get("Values", []))
        for c in r["Conditions"])]
    assert len(metrics) == 1, rules
    (action,) = metrics[0]["Actions"]
    assert (action["Type"], action["FixedResponseConfig"]["StatusCode"]) == ("fixed-response", "404")


def test_https_listener_and_redirect_with_a_certificate(aws):
    """With CertificateArn: HTTPS on 443 (TLS 1.2+) and HTTP answers 301 to it."""
    cert = aws("acm").request_certificate(DomainName="showcase.example.org")["CertificateArn"]
    created = create_stack(aws, "anb-https", {**PARAMETERS, "CertificateArn": cert}, updatable=False)
    assert created["outputs"]["AlbUrl"].startswith("https://")
    elb = aws("elbv2")
    listeners = {l["Port"]: l for l in elb.describe_listeners(
        LoadBalancerArn=created["physical"]["Alb"])["Listeners"]}
    assert set(listeners) == {80, 443}
    https = listeners[443]
    assert (https["Protocol"], https["SslPolicy"]) == ("HTTPS", "ELBSecurityPolicy-TLS13-1-2-2021-06")
    assert [c["CertificateArn"] for c in https["Certificates"]] == [cert]
    assert [a["Type"] for a in https["DefaultActions"]] == ["forward"]
    redirect = listeners[80]["DefaultActions"][0]
    assert redirect["Type"] == "redirect"
    assert (redirect["RedirectConfig"]["Protocol"], redirect["RedirectConfig"]["Port"],
            redirect["RedirectConfig"]["StatusCode"]) == ("HTTPS", "443", "HTTP_301")
    script, _ = user_data(aws, created, "WebLaunchTemplate")
    assert env_file(script)["ANB_PUBLIC_BASE_URL"] == created["outputs"]["AlbUrl"]


def test_auto_scaling_groups(stack, aws):
    asg = aws("autoscaling")
    phys = stack["physical"]
    groups = {g["AutoScalingGroupName"]: g for g in asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=[phys["WebGroup"], phys["WorkerGroup"]])["AutoScalingGroups"]}
    web, worker = groups[phys["WebGroup"]], groups[phys["WorkerGroup"]]
    assert (web["MinSize"], web["MaxSize"], worker["MinSize"], worker["MaxSize"]) == (1, 3, 1, 3)
    assert web["TargetGroupARNs"] == [phys["WebTargetGroup"]]
    assert web["HealthCheckType"] == "ELB"
    assert not worker.get("TargetGroupARNs")


def test_database(stack, aws):
    db = aws("rds").describe_db_instances(DBInstanceIdentifier=stack["physical"]["Database"])["DBInstances"][0]
    assert (db["Engine"], db["EngineVersion"].split(".")[0]) == ("postgres", "15")
    assert db["MultiAZ"] and db["StorageEncrypted"] and not db["PubliclyAccessible"]
    assert db["DeletionProtection"] is False  # PARAMETERS["DbDeletionProtection"]
    subnets = {s["SubnetIdentifier"] for s in db["DBSubnetGroup"]["Subnets"]}
    assert subnets == {stack["physical"]["PrivateSubnet1"], stack["physical"]["PrivateSubnet2"]}
    groups = [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]]
    if groups != [stack["physical"]["DatabaseSecurityGroup"]]:
        # moto ignores it (EMULATOR_GAPS); the template test checks the Ref.
        assert ("AWS::RDS::DBInstance", "VPCSecurityGroups") in EMULATOR_GAPS["ignored_properties"]


def test_log_groups_keep_30_days(stack, aws):
    for tier in ("web", "worker"):
        groups = aws("logs").describe_log_groups(logGroupNamePrefix=f"/anb/{STACK}/{tier}")["logGroups"]
        assert [g["retentionInDays"] for g in groups] == [30]


def test_dashboard_shows_service_and_aws_metrics(stack, aws):
    body = json.loads(aws("cloudwatch").get_dashboard(DashboardName=f"{STACK}-anb")["DashboardBody"])
    names = set()
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            names.update(x for x in row if isinstance(x, str))
    for metric in ("http_requests_total", "http_request_duration_ms", "uploads_accepted", "uploads_rejected",
                   "votes", "jobs_started", "jobs_succeeded", "jobs_failed", "jobs_retried", "jobs_dead_lettered",
                   "transcode_seconds", "upload_to_processed_seconds", "queue_lag_seconds", "process_cpu_seconds_total",
                   "process_resident_memory_bytes", "RequestCount", "TargetResponseTime",
                   "ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage",
                   "GroupInServiceInstances", "CPUUtilization", "DatabaseConnections"):
        assert metric in names, metric
    assert {"ANB/Backend", "ANB/Worker", "AWS/ApplicationELB", "AWS/SQS", "AWS/AutoScaling", "AWS/RDS"} <= names


# ------------------------------------------------------------ deploy.sh
def run_deploy(moto, tmp_path, *args):
    port = moto.rsplit(":", 1)[1]
    env = {
        **os.environ,
        "PATH": f"{Path(tool('ANB_AWS_CLI', 'aws')).parent}:{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": f"http://localhost:{port}",  # DEPLOY_SH_GAPS["endpoint"]
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }
    env.pop("AWS_DEFAULT_REGION", None)
    env.pop("AWS_PROFILE", None)
    return subprocess.run(["bash", str(DEPLOY_SH), *args], capture_output=True, text=True, env=env, timeout=300)


def test_deploy_sh_refuses_bad_arguments(tmp_path):
    deb = tmp_path / "anb_0.1.0-1_amd64.deb"
    deb.write_bytes(b"!<arch>\n")
    cases = [
        ([], "--stack-name is required"),
        (["--stack-name", "anb"], "--deb is required"),
        (["--stack-name", "9anb", "--deb", str(deb)], "stack name '9anb'"),
        (["--stack-name", "anb", "--deb", str(tmp_path / "missing.deb")], "no such file"),
        (["--stack-name", "anb", "--deb", str(deb), "--parameter", "PackageKey=x.deb"], "set by this script"),
        (["--stack-name", "anb", "--deb", str(deb), "--parameter", "oops"], "KEY=VALUE"),
        (["--stack-name", "anb", "--deb", str(deb), "--frobnicate"], "unknown argument"),
        (["--stack-name", "anb", "--deb"], "--deb needs a value"),
    ]
    for args, message in cases:
        run = subprocess.run(["bash", str(DEPLOY_SH), *args], capture_output=True, text=True)
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)
    run = subprocess.run(["bash", str(DEPLOY_SH), "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("Usage: deploy/aws/deploy.sh")


def test_deploy_sh_against_the_emulator(moto, aws, tmp_path):
    """deploy.sh creates the artifact bucket, uploads the .deb, deploys, redeploys a new package."""
    template = tmp_path / "template.json"
    template.write_text(json.dumps(emulator_variant(load_template())[0]))
    ssm = aws("ssm")
    try:
        ssm.get_parameter(Name=EMULATOR_AMI_PARAMETER)
    except ssm.exceptions.ParameterNotFound:
        image = aws("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ssm.put_parameter(Name=EMULATOR_AMI_PARAMETER, Value=image, Type="String")
    print("\ndeploy.sh on the emulator:", *(f"\n  - {k}: {v}" for k, v in DEPLOY_SH_GAPS.items()))

    stack_name, s3, cfn = "anb-deploy-sh", aws("s3"), aws("cloudformation")
    bucket = f"anb-artifacts-{ACCOUNT}-{REGION}"
    keys = []
    for version in ("0.1.0", "0.1.1"):
        deb = tmp_path / f"anb_{version}-1_amd64.deb"
        deb.write_bytes(b"!<arch>\n" + version.encode())
        run = run_deploy(moto, tmp_path, "--stack-name", stack_name, "--deb", str(deb), "--template", str(template),
                         "--no-deletion-protection", "--parameter", "WebMaxSize=4",
                         "--parameter", f"MailFrom={PARAMETERS['MailFrom']}",
                         "--parameter", f"LatestAmiId={EMULATOR_AMI_PARAMETER}")  # DEPLOY_SH_GAPS["LatestAmiId"]
        # DEPLOY_SH_GAPS["outputs"]: everything up to the URL works; moto has no outputs to print.
        assert run.returncode == 2, run.stdout + run.stderr
        assert run.stderr.strip().endswith(f"stack {stack_name} has no AlbUrl output"), run.stderr
        params = {p["ParameterKey"]: p["ParameterValue"]
                  for p in cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["Parameters"]}
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()[:16]
        key = f"packages/{stack_name}/anb_{version}-1_amd64-{digest}.deb"
        assert (params["PackageBucket"], params["PackageKey"]) == (bucket, key)
        assert (params["WebMaxSize"], params["DbDeletionProtection"]) == ("4", "false")
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == deb.read_bytes()
        keys.append(key)
    assert keys[0] != keys[1], "a new package must get a new key (and so a rolling replacement)"
    status = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    assert status == "UPDATE_COMPLETE"

    # The artifact bucket deploy.sh created: private and encrypted; the template went through it.
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(pab.values()), pab
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"templates/{stack_name}/").get("Contents", [])
    assert listed, "the template was not uploaded to the artifact bucket"


# ------------------------------------------------------ scripts and units
def rendered_user_data(logical: str) -> str:
    """A launch template's user data with every ${} replaced by a plain word."""
    data = load_template()["Resources"][logical]["Properties"]["LaunchTemplateData"]["UserData"]
    sub = data["Fn::Base64"]["Fn::Sub"]
    text = sub[0] if isinstance(sub, list) else sub
    return re.sub(r"\$\{([^!}][^}]*)\}", lambda m: "X" + re.sub(r"\W", "_", m.group(1)), text)


def test_shell_scripts_pass_shellcheck(tmp_path):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing (apt-get install shellcheck)"
    scripts = [DEPLOY_SH]
    for logical in ("WebLaunchTemplate", "WorkerLaunchTemplate"):
        path = tmp_path / f"{logical}.sh"
        path.write_text(rendered_user_data(logical))
        scripts.append(path)
    run = subprocess.run([shellcheck, "--shell=bash", *map(str, scripts)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    maintainer = [ROOT / "deploy" / "debian" / name for name in ("postinst", "prerm", "postrm")]
    run = subprocess.run([shellcheck, "--shell=sh", *map(str, maintainer)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    for path in [DEPLOY_SH, *maintainer]:
        assert os.access(path, os.X_OK), f"{path} is not executable"


def test_systemd_units_verify(tmp_path):
    """systemd-analyze verify in a throwaway root with stand-in binaries."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (apt-get install systemd)"
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "etc" / "anb").mkdir(parents=True)
    (root / "etc" / "anb" / "anb.env").write_text((ROOT / "deploy" / "systemd" / "anb.env.example").read_text())
    for exe in ("anb-web", "anb-worker"):
        stand_in = root / "usr" / "bin" / exe
        stand_in.write_text("#!/bin/sh\nexit 0\n")
        stand_in.chmod(0o755)
    # The host's own units (targets the services are ordered against).
    units = root / "usr" / "lib" / "systemd"
    units.mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", units / "system", symlinks=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    paths = []
    for unit in ("anb-web.service", "anb-worker.service"):
        target = root / "etc" / "systemd" / "system" / unit
        shutil.copy(ROOT / "deploy" / "systemd" / unit, target)
        paths.append(str(target))
    run = subprocess.run([analyze, "verify", f"--root={root}", "--man=no", *paths], capture_output=True, text=True)
    assert run.returncode == 0 and not run.stdout.strip() and not run.stderr.strip(), run.stdout + run.stderr

    for unit, stop in (("anb-web.service", "40"), ("anb-worker.service", "30")):
        text = (ROOT / "deploy" / "systemd" / unit).read_text()
        for line in ("EnvironmentFile=/etc/anb/anb.env", "Restart=on-failure", "KillSignal=SIGTERM",
                     f"TimeoutStopSec={stop}", "Environment=MALLOC_ARENA_MAX=2", "User=anb", "StateDirectory=anb",
                     "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                     f"ExecStart=/usr/bin/{unit.split('.')[0]}", "StartLimitIntervalSec=0", "RestartSec=5"):
            assert line in text.splitlines() or any(l.startswith(line + " ") for l in text.splitlines()), (unit, line)
        # A unit that gives up restarting stays failed for good (issue 26).
        assert "StartLimitBurst" not in text, unit
