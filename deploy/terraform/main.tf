# Infrastructure for arcane-aip: ECR repositories with immutable tags, a router host (gateway and
# log server) and enclave-enabled compute hosts, managed through SSM only (no SSH, no key pairs),
# and the least-privilege roles GitHub workflows assume through OIDC. No secrets live here: the
# log's database URL and the release publisher key are set out of band (SSM Parameter Store,
# GitHub environment secrets).

locals {
  components = ["log-server", "gateway", "compute", "client"]
}

resource "aws_ecr_repository" "component" {
  for_each             = toset(local.components)
  name                 = "arcane-aip/${each.key}"
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
}

# --- hosts ---------------------------------------------------------------------------------------

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "host" {
  name               = "arcane-aip-host"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "host_ssm" {
  role       = aws_iam_role.host.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy_attachment" "host_ecr_read" {
  role       = aws_iam_role.host.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
}

data "aws_iam_policy_document" "host_parameters" {
  statement {
    actions   = ["ssm:GetParameter"]
    resources = ["arn:aws:ssm:${var.region}:*:parameter/arcane-aip/*"]
  }
}

resource "aws_iam_role_policy" "host_parameters" {
  name   = "read-arcane-parameters"
  role   = aws_iam_role.host.id
  policy = data.aws_iam_policy_document.host_parameters.json
}

resource "aws_iam_instance_profile" "host" {
  name = "arcane-aip-host"
  role = aws_iam_role.host.name
}

resource "aws_security_group" "router" {
  name   = "arcane-aip-router"
  vpc_id = var.vpc_id
  ingress {
    description = "gateway / relay"
    from_port   = 8741
    to_port     = 8741
    protocol    = "tcp"
    cidr_blocks = var.client_cidrs
  }
  ingress {
    description = "log read API"
    from_port   = 8740
    to_port     = 8740
    protocol    = "tcp"
    cidr_blocks = var.client_cidrs
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "compute" {
  name   = "arcane-aip-compute"
  vpc_id = var.vpc_id
  ingress {
    description     = "requests from the gateway only"
    from_port       = 8742
    to_port         = 8742
    protocol        = "tcp"
    security_groups = [aws_security_group.router.id]
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_instance" "router" {
  ami                    = var.ami_id
  instance_type          = var.router_instance_type
  subnet_id              = var.subnet_id
  iam_instance_profile   = aws_iam_instance_profile.host.name
  vpc_security_group_ids = [aws_security_group.router.id]
  metadata_options {
    http_tokens = "required"
  }
  # The router runs the log server and the gateway; deploy workflows target hosts by these tags.
  tags = {
    Name              = "arcane-aip-router"
    arcane-managed    = "true"
    arcane-log-server = "true"
    arcane-gateway    = "true"
  }
}

resource "aws_instance" "compute" {
  count                  = var.compute_count
  ami                    = var.ami_id
  instance_type          = var.compute_instance_type
  subnet_id              = var.subnet_id
  iam_instance_profile   = aws_iam_instance_profile.host.name
  vpc_security_group_ids = [aws_security_group.compute.id]
  enclave_options {
    enabled = true
  }
  metadata_options {
    http_tokens = "required"
  }
  tags = {
    Name           = "arcane-aip-compute-${count.index}"
    arcane-managed = "true"
    arcane-compute = "true"
  }
}

# --- roles for GitHub workflows (OIDC) --------------------------------------------------------

data "aws_iam_policy_document" "github_assume" {
  for_each = toset(["build", "package", "deploy"])
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.github_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringLike"
      variable = "token.actions.githubusercontent.com:sub"
      # Build runs on main; package and deploy only from their approved environments.
      values = each.key == "build" ? ["repo:${var.github_repository}:ref:refs/heads/main"] : (
        each.key == "package" ? ["repo:${var.github_repository}:environment:release"] :
        ["repo:${var.github_repository}:environment:production"]
      )
    }
  }
}

resource "aws_iam_role" "github" {
  for_each           = data.aws_iam_policy_document.github_assume
  name               = "arcane-aip-github-${each.key}"
  assume_role_policy = each.value.json
}

data "aws_iam_policy_document" "build" {
  statement {
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    actions = [
      "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
      "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
    ]
    resources = [for r in aws_ecr_repository.component : r.arn]
  }
}

data "aws_iam_policy_document" "pull" {
  statement {
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:DescribeImages"]
    resources = [for r in aws_ecr_repository.component : r.arn]
  }
}

data "aws_iam_policy_document" "deploy" {
  source_policy_documents = [data.aws_iam_policy_document.pull.json]
  statement {
    actions   = ["ssm:SendCommand"]
    resources = ["arn:aws:ssm:${var.region}::document/AWS-RunShellScript"]
  }
  statement {
    actions   = ["ssm:SendCommand"]
    resources = ["arn:aws:ec2:${var.region}:*:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/arcane-managed"
      values   = ["true"]
    }
  }
  statement {
    actions   = ["ssm:ListCommandInvocations", "ssm:GetCommandInvocation"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "github" {
  for_each = {
    build   = data.aws_iam_policy_document.build.json
    package = data.aws_iam_policy_document.pull.json
    deploy  = data.aws_iam_policy_document.deploy.json
  }
  name   = "arcane-aip-${each.key}"
  role   = aws_iam_role.github[each.key].id
  policy = each.value
}
