"""What every EKS node shares, managed node group or Karpenter's: IAM documents (node roles and
Pod Identity roles), the root volume, the architecture; and how a pod gets its own IAM role."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

MANAGED = "arn:aws:iam::aws:policy"
# Managed policies every node needs: join the cluster (it also lets the Pod Identity agent fetch
# pod credentials), pod networking, pulling from ECR. Nothing else runs as the node role.
NODE_POLICIES = (
    f"{MANAGED}/AmazonEKSWorkerNodePolicy",
    f"{MANAGED}/AmazonEKS_CNI_Policy",
    f"{MANAGED}/AmazonEC2ContainerRegistryReadOnly",
)
# Who may assume a role handed out by EKS Pod Identity (the EKS Auth service).
POD_IDENTITY_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }
    ],
}
NODE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
# Root volume per node, GiB: GPU images (CUDA, torch) are large.
DISK_GIB = {"cpu": 50, "gpu": 100}
# Every AL2023 AMI Gantry's nodes run is x86_64 (AMI types, Karpenter's requirements, images).
ARCH = "amd64"


def pod_identity_role(
    name: str,
    cluster_name: str,
    service_account: tuple[str, str],  # (namespace, name)
    cluster: pulumi.Resource,
    parent: pulumi.Resource,
) -> tuple[aws.iam.Role, aws.eks.PodIdentityAssociation]:
    """An IAM role that the pods of one service account get through EKS Pod Identity, and its
    association. EKS injects the credentials when a pod is created: start the pods after it."""
    role = aws.iam.Role(
        name,
        assume_role_policy=json.dumps(POD_IDENTITY_TRUST),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    association = aws.eks.PodIdentityAssociation(
        name,
        cluster_name=cluster_name,
        namespace=service_account[0],
        service_account=service_account[1],
        role_arn=role.arn,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[cluster]),
    )
    return role, association
