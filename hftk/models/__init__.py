"""Model references, device and precision policy, the fast Japanese tokenizer, peft (LoRA)."""
