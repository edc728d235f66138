"""Inference for real use, behind `politeteacher.predict`: the model built once and run on batches
(`model`), images decoded by a loader worker and video frames (`sources`), results written as they come
(`outputs`), progress (`progress`)."""
