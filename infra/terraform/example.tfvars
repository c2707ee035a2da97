# terraform -chdir=infra/terraform apply -var-file=example.tfvars (copy it and fill in yours)
project_id         = "my-ml-project"
region             = "us-central1"
submitters         = ["user:me@example.com"]
create_tensorboard = false
