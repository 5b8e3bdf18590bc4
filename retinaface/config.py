"""Constants of the model and the pipeline (torch-free; runs on the Pi, Python 3.7+)."""

# biubug6 cfg_mnet: anchors per level, strides, box variances.
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)

# BGR mean subtracted from the image; no scaling (biubug6 detect.py).
BGR_MEAN = (104.0, 117.0, 123.0)

# Post-processing defaults of biubug6 detect.py; display threshold 0.6.
CONF_THRESHOLD = 0.6
PRE_NMS_TOP_K = 5000
NMS_THRESHOLD = 0.4
KEEP_TOP_K = 750

# ONNX graph names, as in the study.
INPUT_NAME = "input"
OUTPUT_NAMES = ("bbox", "confidence", "landmark")
