"""histozoo's custom TFX components: the Beam ExampleGen over zoo.data.readers, the segmentation Evaluator that
blesses on the papers' metrics, and the MLflow registry step."""
