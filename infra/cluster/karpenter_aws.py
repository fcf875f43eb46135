"""What Karpenter needs from AWS, read from Karpenter's own CloudFormation template.

platform/karpenter/cloudformation.yaml is the template the Karpenter v1.14 guide deploys; Gantry
creates the same resources with Pulumi: the controller's IAM policies (its role reaches the pod
through EKS Pod Identity), the node role with its EKS access entry, and the interruption queue
with its policy and EventBridge rules. Nothing here spells a permission of its own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, cast

import pulumi
import pulumi_aws as aws
import yaml

from gantry import project
from infra.cluster.eks_nodes import NODE_POLICIES, NODE_TRUST, pod_identity_role

# Where the chart runs and the service account it creates (chart default name: the release's).
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"
# The template's controller policies (ManagedPolicyName without "-<cluster>"), as it names them.
CONTROLLER_POLICIES = (
    "NodeLifecyclePolicy",
    "IAMIntegrationPolicy",
    "EKSIntegrationPolicy",
    "InterruptionPolicy",
    "ResourceDiscoveryPolicy",
    "ZonalShiftPolicy",
)
# The template's EventBridge rules: each sends its EC2/Health events to the queue.
EVENT_RULES = (
    "ScheduledChangeRule",
    "SpotInterruptionRule",
    "RebalanceRule",
    "InstanceStateChangeRule",
    "CapacityReservationInterruptionRule",
)
PARTITION = "aws"  # as infra/cluster/eks_nodes.py's managed policy ARNs
_VAR = re.compile(r"\$\{([^}]+)\}")


class _CfnLoader(yaml.SafeLoader):
    """CloudFormation's short-form functions as plain mappings: `!Sub x` -> {"!Sub": "x"}."""


def _short_form(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    return {str(node.tag): loader.construct_scalar(cast(yaml.ScalarNode, node))}


for _tag in ("!Sub", "!GetAtt", "!Ref"):
    _CfnLoader.add_constructor(_tag, _short_form)


def template_path() -> Path:
    return project.platform_dir() / "karpenter" / "cloudformation.yaml"


@cache
def resources(path: Path | None = None) -> dict[str, Any]:
    """The template's `Resources`, by logical name."""
    doc = yaml.load((path or template_path()).read_text(), Loader=_CfnLoader)
    found: dict[str, Any] = doc["Resources"]
    return found


def resolve(value: Any, names: dict[str, str]) -> Any:
    """`value` with `!Sub`/`!GetAtt`/`!Ref` replaced by `names` (keys as the template writes
    them: "AWS::Region", "ClusterName", "KarpenterNodeRole.Arn"). An unknown name is an error."""
    if isinstance(value, dict):
        if "!Sub" in value:
            return _VAR.sub(lambda m: names[m[1]], value["!Sub"])
        if "!GetAtt" in value:
            return names[value["!GetAtt"]]
        if "!Ref" in value:
            return names[value["!Ref"]]
        return {k: resolve(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, names) for v in value]
    return value


def template_names(
    cluster: str, region: str, account: str, node_role_arn: str, queue_arn: str
) -> dict[str, str]:
    return {
        "AWS::Partition": PARTITION,
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::URLSuffix": "amazonaws.com",
        "ClusterName": cluster,
        "KarpenterNodeRole.Arn": node_role_arn,
        "KarpenterInterruptionQueue.Arn": queue_arn,
    }


def controller_policy(name: str, names: dict[str, str]) -> dict[str, Any]:
    """One of CONTROLLER_POLICIES as the template writes it (a JSON string after !Sub)."""
    document = resolve(resources()[name]["Properties"]["PolicyDocument"], names)
    parsed: dict[str, Any] = json.loads(document)
    return parsed


def _policy_text(name: str, names: dict[str, str] | None) -> str | None:
    return json.dumps(controller_policy(name, names)) if names else None


def queue_policy(names: dict[str, str]) -> dict[str, Any]:
    """EventBridge (and SQS) may send to the queue; nothing may use it over plain HTTP."""
    policy: dict[str, Any] = resolve(
        resources()["KarpenterInterruptionQueuePolicy"]["Properties"]["PolicyDocument"], names
    )
    return policy


def event_pattern(rule: str) -> dict[str, Any]:
    pattern: dict[str, Any] = resources()[rule]["Properties"]["EventPattern"]
    return pattern


def _kebab(name: str) -> str:
    """`SpotInterruptionRule` -> `spot-interruption` (resource names)."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z]*", name.removesuffix("Rule"))
    return "-".join(w.lower() for w in words)


@dataclass(frozen=True)
class KarpenterAwsArgs:
    cluster_name: str
    region: str
    account_id: pulumi.Input[str]
    cluster: pulumi.Resource  # the Pod Identity association and access entry need it first


class KarpenterAws(pulumi.ComponentResource):
    """Karpenter's AWS side: the interruption queue and its rules, the node role and its access
    entry, and the controller's role through EKS Pod Identity."""

    node_role: aws.iam.Role
    queue: aws.sqs.Queue
    ready: list[pulumi.Resource]  # what the controller's pods need before they start

    def __init__(
        self, name: str, args: KarpenterAwsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gantry:cluster:KarpenterAws", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        after_cluster = pulumi.ResourceOptions(parent=self, depends_on=[args.cluster])
        queue_props = resources()["KarpenterInterruptionQueue"]["Properties"]
        self.queue = aws.sqs.Queue(
            name,
            name=args.cluster_name,  # the template's QueueName, and settings.interruptionQueue
            message_retention_seconds=queue_props["MessageRetentionPeriod"],
            sqs_managed_sse_enabled=queue_props["SqsManagedSseEnabled"],
            opts=child,
        )
        self.node_role = aws.iam.Role(
            f"{name}-node", assume_role_policy=json.dumps(NODE_TRUST), opts=child
        )
        node_policies = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{arn.rsplit('/', 1)[1]}",
                role=self.node_role.name,
                policy_arn=arn,
                opts=child,
            )
            for arn in NODE_POLICIES
        ]
        # Nodes Karpenter starts join the cluster as this role (API authentication mode).
        access = aws.eks.AccessEntry(
            f"{name}-node",
            cluster_name=args.cluster_name,
            principal_arn=self.node_role.arn,
            type="EC2_LINUX",
            opts=after_cluster,
        )
        # None offline, where no provider returns the ARNs (`gantry render`): no policy text.
        names = pulumi.Output.all(args.account_id, self.node_role.arn, self.queue.arn).apply(
            lambda v: template_names(args.cluster_name, args.region, *v) if all(v) else None
        )
        queue_policy_ = aws.sqs.QueuePolicy(
            name,
            queue_url=self.queue.url,
            policy=names.apply(lambda n: json.dumps(queue_policy(n)) if n else None),
            opts=child,
        )
        for rule_name in EVENT_RULES:
            rule = aws.cloudwatch.EventRule(
                f"{name}-{_kebab(rule_name)}",
                event_pattern=json.dumps(event_pattern(rule_name)),
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-{_kebab(rule_name)}",
                rule=rule.name,
                target_id="KarpenterInterruptionQueueTarget",
                arn=self.queue.arn,
                opts=child,
            )
        role, association = pod_identity_role(
            f"{name}-controller",
            args.cluster_name,
            (NAMESPACE, SERVICE_ACCOUNT),
            args.cluster,
            self,
        )
        attachments = []
        for policy_name in CONTROLLER_POLICIES:
            short = _kebab(policy_name.removesuffix("Policy"))
            policy = aws.iam.Policy(
                f"{name}-{short}",
                policy=names.apply(partial(_policy_text, policy_name)),
                opts=child,
            )
            attachments.append(
                aws.iam.RolePolicyAttachment(
                    f"{name}-{short}", role=role.name, policy_arn=policy.arn, opts=child
                )
            )
        self.ready = [association, *attachments, queue_policy_, access, *node_policies]
        self.register_outputs({"queue": self.queue.name, "nodeRole": self.node_role.name})
