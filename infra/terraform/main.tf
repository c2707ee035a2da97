# What a Vertex AI run of the image classification pipelines needs in a project: the APIs, a
# pipeline-root bucket, an Artifact Registry repository for the step images, and a service account
# that the runs use, with only the roles they need.

locals {
  bucket_name = var.bucket_name != "" ? var.bucket_name : "${var.project_id}-imgclf"
  apis = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "compute.googleapis.com", # accelerator quota of custom jobs
    "iam.googleapis.com",
    "storage.googleapis.com",
  ]
  # Project-level roles of the pipeline service account; everything else is granted on the
  # bucket, the repository or the account itself.
  project_roles = [
    "roles/aiplatform.user",   # run pipeline tasks and custom jobs, upload models, deploy
    "roles/logging.logWriter", # step logs
  ]
}

resource "google_project_service" "apis" {
  for_each = toset(local.apis)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# --- pipeline root -----------------------------------------------------------------------------

resource "google_storage_bucket" "pipeline_root" {
  name                        = local.bucket_name
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  # Folders are real in a hierarchical namespace, so renaming one through Cloud Storage FUSE
  # (/gcs/BUCKET in every step) is atomic: the register step renames each new version folder.
  hierarchical_namespace {
    enabled = true
  }

  dynamic "lifecycle_rule" {
    for_each = var.artifact_retention_days > 0 ? [var.artifact_retention_days] : []
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = ["pipeline-root/"]
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# --- step images -------------------------------------------------------------------------------

resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = var.repository_id
  format        = "DOCKER"
  description   = "Step images of the image classification pipelines, tagged with the git commit."
  labels        = var.labels

  depends_on = [google_project_service.apis]
}

# Cloud Build (containers/cloudbuild.yaml) pushes with its default service account, which may
# write to the project's repositories; other principals (a CI account) are listed here.
resource "google_artifact_registry_repository_iam_member" "pushers" {
  for_each = toset(var.image_pushers)

  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = each.value
}

# --- the service account runs are submitted as -------------------------------------------------

resource "google_service_account" "pipelines" {
  project      = var.project_id
  account_id   = var.service_account_id
  display_name = "Image classification pipelines"
  description  = "Runs the image classification pipelines on Vertex AI (gcp.service_account)."

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "pipelines" {
  for_each = toset(local.project_roles)

  project = var.project_id
  role    = each.value
  member  = google_service_account.pipelines.member
}

# Run artifacts and the folder registry: read and write objects of this bucket only.
resource "google_storage_bucket_iam_member" "pipelines_objects" {
  bucket = google_storage_bucket.pipeline_root.name
  role   = "roles/storage.objectUser"
  member = google_service_account.pipelines.member
}

# Cloud Storage FUSE (/gcs/BUCKET in every step) and PipelineJob's bucket check read the bucket.
resource "google_storage_bucket_iam_member" "pipelines_bucket" {
  bucket = google_storage_bucket.pipeline_root.name
  role   = "roles/storage.legacyBucketReader"
  member = google_service_account.pipelines.member
}

resource "google_artifact_registry_repository_iam_member" "pipelines_pull" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.pipelines.member
}

# The training custom jobs run as the pipeline's own account: it must be allowed to act as itself.
resource "google_service_account_iam_member" "pipelines_act_as_itself" {
  service_account_id = google_service_account.pipelines.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.pipelines.member
}

resource "google_service_account_iam_member" "submitters" {
  for_each = toset(var.submitters)

  service_account_id = google_service_account.pipelines.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# --- optional TensorBoard ----------------------------------------------------------------------

resource "google_vertex_ai_tensorboard" "training" {
  count = var.create_tensorboard ? 1 : 0

  project      = var.project_id
  region       = var.region
  display_name = "imgclf-training"
  description  = "Training curves of the image classification pipelines."
  labels       = var.labels

  depends_on = [google_project_service.apis]
}

