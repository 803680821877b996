"""transformers configuration of gptlab's GPT, shipped by `gptlab export PATH --format hf --out DIR`.

    gptlab export runs/demo --format hf --out demo_hf
    python -m pytest tests/test_export_hf.py

The fields are those of gptlab/models/gpt.py's GPTConfig; transformers' usual names map onto them.
"""

from transformers import PretrainedConfig


class GptlabConfig(PretrainedConfig):
    model_type = "gptlab"
    attribute_map = {"num_hidden_layers": "n_layer", "hidden_size": "n_embd", "num_attention_heads": "n_head",
                     "num_key_value_heads": "n_kv_head", "max_position_embeddings": "sequence_len"}

    def __init__(self, n_layer=12, n_embd=768, n_head=6, n_kv_head=6, vocab_size=32768, sequence_len=2048,
                 softcap=15.0, rope_base=10000.0, **kwargs):
        self.n_layer, self.n_embd, self.n_head, self.n_kv_head = n_layer, n_embd, n_head, n_kv_head
        self.vocab_size, self.sequence_len = vocab_size, sequence_len
        self.softcap, self.rope_base = softcap, rope_base
        kwargs.setdefault("tie_word_embeddings", False)
        kwargs.setdefault("use_cache", False)
        super().__init__(**kwargs)
