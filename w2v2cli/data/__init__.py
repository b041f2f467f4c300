"""Training data shared by `w2v2 pretrain` and `w2v2 finetune`: sources -> length-bucketed sampler -> padded batches
(waveforms, lengths, and for LabeledUtterances the CTC targets and their lengths).

    source = read_source("train.tsv", need_text=True)
    sizes = [min(u.num_samples, max_sample_size) for u in source.utterances]
    sampler = BucketBatchSampler(sizes, max_tokens, seed=seed, num_replicas=world_size, rank=rank)
    loader = make_loader(AudioBatchDataset(source.utterances, max_sample_size=max_sample_size, seed=seed), sampler)
"""

from .dataset import AudioBatchDataset, Batch, LabeledUtterance, make_loader
from .sampler import BucketBatchSampler
from .sources import DataSource, Utterance, read_source

__all__ = ["AudioBatchDataset", "Batch", "BucketBatchSampler", "DataSource", "LabeledUtterance", "Utterance",
           "make_loader", "read_source"]
