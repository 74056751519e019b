"""Serving: export to TF Serving's SavedModel layout (export), TF Serving config files (config), a local
PredictionService server (local_server) and gRPC/REST clients (client). See docs/serving.md."""
