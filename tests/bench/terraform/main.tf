# The demo stack (config/demo.yaml) written for Terraform, for the side-by-side benchmark
# (tests/bench/bench.py). Same resources, names, tags and settings as presta-reconciler builds;
# the user data is the reconciler's rendered bootstrap, passed in as a file.
# Only ever pointed at the local emulator: every endpoint is var.endpoint.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}

variable "endpoint" { type = string }
variable "user_data_file" { type = string }
variable "db_password" {
  type      = string
  sensitive = true
}
variable "admin_password" {
  type      = string
  sensitive = true
}
variable "stack" {
  type    = string
  default = "tfdemo"
}

provider "aws" {
  region                      = "eu-west-3"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  skip_region_validation      = true
  endpoints {
    autoscaling = var.endpoint
    ec2         = var.endpoint
    efs         = var.endpoint
    elbv2       = var.endpoint
    rds         = var.endpoint
    ssm         = var.endpoint
    sts         = var.endpoint
    iam         = var.endpoint
  }
  default_tags {
    tags = {
      "managed-by"              = "terraform-bench"
      "presta-reconciler/stack" = var.stack
      environment               = "demo"
    }
  }
}

data "aws_vpc" "main" {
  tags = { Name = "presta-demo-vpc" }
}

data "aws_subnets" "public" {
  filter {
    name   = "tag:Name"
    values = ["presta-demo-public-*"]
  }
}

data "aws_subnets" "private" {
  filter {
    name   = "tag:Name"
    values = ["presta-demo-private-*"]
  }
}

# ---- secrets
resource "aws_ssm_parameter" "db_password" {
  name  = "/presta-reconciler/${var.stack}/db-password"
  type  = "SecureString"
  value = var.db_password
}

resource "aws_ssm_parameter" "admin_password" {
  name  = "/presta-reconciler/${var.stack}/admin-password"
  type  = "SecureString"
  value = var.admin_password
}

# ---- security groups: internet -> ALB -> app -> RDS/EFS
resource "aws_security_group" "alb" {
  name        = "${var.stack}-alb-sg"
  description = "presta ${var.stack}: load balancer"
  vpc_id      = data.aws_vpc.main.id
  ingress {
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "app" {
  name        = "${var.stack}-app-sg"
  description = "presta ${var.stack}: instances, from the ALB only"
  vpc_id      = data.aws_vpc.main.id
  ingress {
    from_port       = 80
    to_port         = 80
    protocol        = "tcp"
    security_groups = [aws_security_group.alb.id]
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "db" {
  name        = "${var.stack}-db-sg"
  description = "presta ${var.stack}: MySQL from the instances only"
  vpc_id      = data.aws_vpc.main.id
  ingress {
    from_port       = 3306
    to_port         = 3306
    protocol        = "tcp"
    security_groups = [aws_security_group.app.id]
  }
}

resource "aws_security_group" "efs" {
  name        = "${var.stack}-efs-sg"
  description = "presta ${var.stack}: NFS from the instances only"
  vpc_id      = data.aws_vpc.main.id
  ingress {
    from_port       = 2049
    to_port         = 2049
    protocol        = "tcp"
    security_groups = [aws_security_group.app.id]
  }
}

# ---- load balancer
resource "aws_lb_target_group" "app" {
  name                 = "${var.stack}-tg"
  port                 = 80
  protocol             = "HTTP"
  vpc_id               = data.aws_vpc.main.id
  deregistration_delay = 30
  health_check {
    path                = "/presta-health.txt"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
  stickiness {
    type            = "lb_cookie"
    cookie_duration = 86400
    enabled         = true
  }
}

resource "aws_lb" "main" {
  name               = "${var.stack}-alb"
  load_balancer_type = "application"
  internal           = false
  subnets            = data.aws_subnets.public.ids
  security_groups    = [aws_security_group.alb.id]
  idle_timeout       = 60
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.main.arn
  port              = 80
  protocol          = "HTTP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app.arn
  }
}

# ---- database
resource "aws_db_subnet_group" "main" {
  name       = "${var.stack}-db-subnets"
  subnet_ids = data.aws_subnets.private.ids
}

resource "aws_db_instance" "main" {
  identifier              = "${var.stack}-db"
  engine                  = "mysql"
  engine_version          = "8.4"
  instance_class          = "db.t4g.micro"
  allocated_storage       = 20
  max_allocated_storage   = 100
  storage_encrypted       = true
  db_name                 = "prestashop"
  username                = "prestashop"
  password                = var.db_password
  db_subnet_group_name    = aws_db_subnet_group.main.name
  vpc_security_group_ids  = [aws_security_group.db.id]
  multi_az                = false
  publicly_accessible     = false
  backup_retention_period = 1
  deletion_protection     = false
  skip_final_snapshot     = true
}

# ---- file system
resource "aws_efs_file_system" "main" {
  creation_token   = "${var.stack}-efs"
  encrypted        = true
  throughput_mode  = "elastic"
  performance_mode = "generalPurpose"
  lifecycle_policy {
    transition_to_ia = "AFTER_30_DAYS"
  }
  lifecycle_policy {
    transition_to_primary_storage_class = "AFTER_1_ACCESS"
  }
}

resource "aws_efs_backup_policy" "main" {
  file_system_id = aws_efs_file_system.main.id
  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_efs_mount_target" "private" {
  count           = 2
  file_system_id  = aws_efs_file_system.main.id
  subnet_id       = data.aws_subnets.private.ids[count.index]
  security_groups = [aws_security_group.efs.id]
}

# ---- instances
data "aws_ssm_parameter" "ami" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

resource "aws_launch_template" "app" {
  name                   = "${var.stack}-app"
  image_id               = data.aws_ssm_parameter.ami.value
  instance_type          = "t3.small"
  vpc_security_group_ids = [aws_security_group.app.id]
  user_data              = filebase64(var.user_data_file)
  iam_instance_profile {
    name = "presta-demo-instance"
  }
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    http_endpoint               = "enabled"
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 20
      volume_type = "gp3"
      encrypted   = true
    }
  }
}

resource "aws_autoscaling_group" "app" {
  name                      = "${var.stack}-app"
  min_size                  = 1
  max_size                  = 2
  desired_capacity          = 1
  vpc_zone_identifier       = data.aws_subnets.private.ids
  target_group_arns         = [aws_lb_target_group.app.arn]
  health_check_type         = "ELB"
  health_check_grace_period = 300
  wait_for_capacity_timeout = "0"
  launch_template {
    id      = aws_launch_template.app.id
    version = "$Default"
  }
  lifecycle {
    ignore_changes = [desired_capacity]
  }
}

resource "aws_autoscaling_policy" "cpu" {
  name                   = "${var.stack}-cpu"
  autoscaling_group_name = aws_autoscaling_group.app.name
  policy_type            = "TargetTrackingScaling"
  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
    target_value = 60
  }
}

output "alb_dns_name" { value = aws_lb.main.dns_name }
output "tg_arn" { value = aws_lb_target_group.app.arn }
