output "bucket" {
  description = "Pipeline-root bucket: gcp.bucket."
  value       = "gs://${google_storage_bucket.pipeline_root.name}"
}

output "service_account" {
  description = "Service account the runs are submitted as: gcp.service_account."
  value       = google_service_account.pipelines.email
}

output "image_repository" {
  description = "Where containers/cloudbuild.yaml pushes the step images: images.* = IMAGE_REPOSITORY/{cpu,gpu,tpu,transformers}:COMMIT."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "tensorboard" {
  description = "Vertex AI TensorBoard for gcp.tensorboard (empty unless create_tensorboard)."
  value       = var.create_tensorboard ? google_vertex_ai_tensorboard.training[0].id : ""
}

output "submit_flags" {
  description = "The --set flags of `python pipelines/submit.py --target vertex` for this project (images apart: they carry the commit)."
  value = join(" ", concat(
    [
      "--set gcp.project=${var.project_id}",
      "--set gcp.region=${var.region}",
      "--set gcp.bucket=gs://${google_storage_bucket.pipeline_root.name}",
      "--set gcp.service_account=${google_service_account.pipelines.email}",
    ],
    var.create_tensorboard ? ["--set gcp.tensorboard=${google_vertex_ai_tensorboard.training[0].id}"] : [],
  ))
}
