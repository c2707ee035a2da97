variable "project_id" {
  description = "Google Cloud project the pipelines run in (its ID, e.g. my-ml-project)."
  type        = string
}

variable "region" {
  description = "Region of Vertex AI, the pipeline-root bucket and the Artifact Registry repository; keep them together (e.g. us-central1, europe-west4)."
  type        = string
  default     = "us-central1"
}

variable "bucket_name" {
  description = "Name of the pipeline-root bucket (gs://NAME holds run artifacts and the folder registry); empty for PROJECT_ID-imgclf."
  type        = string
  default     = ""
}

variable "artifact_retention_days" {
  description = "Delete pipeline-root objects this many days after creation (0 keeps them); the folder registry under registry/ is never deleted."
  type        = number
  default     = 0

  validation {
    condition     = var.artifact_retention_days >= 0
    error_message = "artifact_retention_days is a number of days, 0 or more (0 keeps everything)."
  }
}

variable "repository_id" {
  description = "Artifact Registry Docker repository of the step images (cpu, gpu, tpu, transformers)."
  type        = string
  default     = "imgclf"
}

variable "service_account_id" {
  description = "Account ID of the service account the pipelines run as (the part before @)."
  type        = string
  default     = "imgclf-pipelines"
}

variable "submitters" {
  description = "Principals allowed to submit runs as the pipeline service account, e.g. [\"user:me@example.com\", \"group:ml@example.com\"]; they also need roles/aiplatform.user on the project."
  type        = list(string)
  default     = []
}

variable "image_pushers" {
  description = "Principals that may push step images to the repository besides Cloud Build, e.g. a CI service account as \"serviceAccount:ci@PROJECT.iam.gserviceaccount.com\"."
  type        = list(string)
  default     = []
}

variable "create_tensorboard" {
  description = "Create a Vertex AI TensorBoard for the training steps' logs (billed per GiB stored); its name is output as tensorboard, for gcp.tensorboard."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels put on the bucket, the repository and the TensorBoard."
  type        = map(string)
  default     = { app = "image-classification-pipelines" }
}
