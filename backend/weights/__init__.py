"""Pretrained weights: which files each preset needs, a resumable verified downloader, the cache."""
