"""The artifact format: file names and how each format loads (no torch, no transformers: the writer in
:mod:`bertcompress.compression.artifact` and the loader in :mod:`bertcompress.runtime` share it)."""

MANIFEST = "manifest.json"
SKELETON = "skeleton.pt"
WEIGHT_FILES = {"hf": "model.safetensors", "torch": "model.pt", "onnx": "model.onnx"}
HOW_TO_LOAD = {
    "hf": "AutoModelForSequenceClassification.from_pretrained(dir) (task ner: AutoModelForTokenClassification); "
    "AutoTokenizer.from_pretrained(dir)",
    "torch": "bertcompress.runtime.load_artifact(dir) (torch.load(dir/'model.pt', weights_only=False))",
    "onnx": "onnxruntime.InferenceSession(dir/'model.onnx') with input_ids and attention_mask (int64)",
}
