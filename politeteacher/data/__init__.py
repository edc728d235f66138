"""Data: datasets (COCO, demo, custom, image folders), splits, weak/strong views and loaders.

Modules: ``datasets`` (names and checks), ``splits`` (labelled / unlabelled), ``synthetic`` (the demo
data), ``augment`` (strong view), ``mappers`` (weak and two-view mappers), ``loaders`` (training
loaders), ``streams`` (resumable per-iteration batches).
"""
