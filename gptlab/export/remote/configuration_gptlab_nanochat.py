"""transformers configuration of nanochat's GPT, shipped by `gptlab export PATH --format hf --out DIR`.

    gptlab export base_dir/base_checkpoints/d20 --format hf --out d20_hf
    python -m pytest tests/test_export_hf.py

The fields are those of nanochat's GPTConfig (gptlab/models/nanochat.py); transformers' usual names map onto
them. vocab_size is the tokenizer's; the embedding and head have it rounded up to a multiple of 64.
"""

from transformers import PretrainedConfig


class GptlabNanochatConfig(PretrainedConfig):
    model_type = "gptlab_nanochat"
    attribute_map = {"num_hidden_layers": "n_layer", "hidden_size": "n_embd", "num_attention_heads": "n_head",
                     "num_key_value_heads": "n_kv_head", "max_position_embeddings": "sequence_len"}

    def __init__(self, sequence_len=2048, vocab_size=32768, n_layer=12, n_head=6, n_kv_head=6, n_embd=768,
                 window_pattern="SSSL", **kwargs):
        self.sequence_len, self.vocab_size = sequence_len, vocab_size
        self.n_layer, self.n_head, self.n_kv_head, self.n_embd = n_layer, n_head, n_kv_head, n_embd
        self.window_pattern = window_pattern
        kwargs.setdefault("tie_word_embeddings", False)
        kwargs.setdefault("use_cache", False)
        super().__init__(**kwargs)
