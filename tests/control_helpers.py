"""Shared fixtures of the control tests: small offline tokenizers and random HMMs."""

import torch

CORPUS = ["The dog threw a frisbee to the boy.", "Dogs are throwing balls, a cat watched.",
          "ice cream in the café — thrown away!", "He throws; she caught it. THE DOG'S toy",
          "walking on the sidewalk in jeans and a shirt"] * 20


def byte_level_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>",
                                   clean_up_tokenization_spaces=False)


def sentencepiece_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "</s>"])
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False)


def random_hmm_logits(k, v, seed, dtype=torch.float64):
    """Log-parameters of a random HMM with ``k`` states over ``v`` tokens (all positive)."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.log_softmax(torch.randn(*shape, generator=gen, dtype=dtype) * 1.5, -1)
                 for shape in ((k,), (k, k), (k, v)))
