import jax
import numpy as np
import pytest

from scaling.trainer.config import TrainConfig
from scaling.trainer.model import init_model
from scaling.trainer.pretrain import corpus_rows, pretrain
from scaling.tasks import tokenizer
from scaling.tasks.corpus import corpus
from scaling.trainer.train import masked_loss, train


def test_rows_never_train_one_document_to_predict_the_next():
    rows = corpus_rows(["ab", "cde"], length=3)  # a b EOS c d e EOS -> rows [a b EOS] [c d e]
    assert tokenizer.decode(rows.inputs[0]) == "ab"
    assert rows.loss_mask[0].tolist() == [1, 1, 0]  # EOS -> c crosses documents
    assert rows.segments[0].tolist() == [1, 1, 1] and rows.segments[1].tolist() == [1, 1, 1]
    assert rows.positions[1].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="does not fill one row"):
        corpus_rows(["a"], length=8)


def test_pretraining_lowers_corpus_loss_and_zero_tokens_is_random_init(tiny_model_cfg):
    random = pretrain(tiny_model_cfg, 0, seed=0)
    np.testing.assert_array_equal(jax.tree.leaves(random)[0], jax.tree.leaves(init_model(tiny_model_cfg, 0)[1])[0])
    trained = pretrain(tiny_model_cfg, 40 * 16 * tiny_model_cfg.max_len, seed=0, batch_size=16, lr=1e-2)
    held_out = corpus_rows(corpus(20_000, seed=99), tiny_model_cfg.max_len).take(np.arange(32))
    graphdef = init_model(tiny_model_cfg, 0)[0]
    assert float(masked_loss(trained, held_out, graphdef)[0]) < 0.8 * float(masked_loss(random, held_out, graphdef)[0])


def test_sft_can_start_from_a_given_base(tiny_model_cfg):
    data = corpus_rows(corpus(10_000, seed=0), tiny_model_cfg.max_len)
    base = pretrain(tiny_model_cfg, 5 * 8 * tiny_model_cfg.max_len, seed=1, batch_size=8)
    cfg = TrainConfig(budgets=(1,), batch_size=8, lr=1e-9, warmup_steps=0)
    (_, _, after), = train(tiny_model_cfg, cfg, data, init_params=base)
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(base)):
        np.testing.assert_allclose(a, b, atol=1e-6)  # a near-zero step stays at the base, not a fresh init
