"""Using a trained folder: Predictor, pipelines, the HTTP server, ONNX export, pushing to the Hub."""
