"""Training: one loop with two objectives. Read in this order:

    config.py      TrainConfig (the loop), PretrainConfig, FinetuneConfig, the fine-tuning recipes
    trainer.py     Trainer: the one loop (DDP, AMP, accumulation, clipping, validation, exact-resume checkpoints)
    objectives.py  Objective (what the loop asks of one) and its two kinds: PretrainObjective, CtcObjective
    pretrain.py    pretrain(): a model and unlabeled audio -> the loop with the contrastive objective
    finetune.py    finetune(): a model and transcribed audio -> vocabulary, CTC targets -> the loop with CTC
    distributed.py, schedule.py, flops.py: process groups, LR schedules, FLOP counts

This package file imports nothing: the model core takes its configs from train/config.py (through
w2v2cli/config.py), and importing the loop here would import the model core back in the middle of that.
"""
