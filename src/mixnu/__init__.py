"""mixnu: build and evaluate Mixnu-style language models.

A Llama-2-style base gets a language-extended tokenizer, is continued-pretrained into domain
experts, the experts are merged into one Mixtral MoE, and an LLM judge scores the result with a
rubric humans verify. Each stage is a module with one entry function and a `mixnu` sub-command.
"""

__version__ = "0.1.0"
