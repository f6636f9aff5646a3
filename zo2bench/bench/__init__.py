"""Machine floors and step floors: `calibrate` measures the machine, `floors` turns a model into bytes and FLOPs."""
