"""Judge and rewriter models (DeepSeek-V3's role in the report), reached over an
OpenAI-compatible chat API: the protocol (:mod:`~r1lab.judge.prompts`), the client with its
retries and cache (:mod:`~r1lab.judge.client`), the embedded world's oracle judge
(:mod:`~r1lab.judge.oracle`) and a judge for the length of a stage, the oracle served for it
when no API is given (:mod:`~r1lab.judge.session`)."""
