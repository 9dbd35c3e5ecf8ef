"""Fuzzing the readers: seeded mutations (`mutate`), seed files (`seeds`), the per-trial
loaders and outcome classes (`targets`, run in `worker`), batched subprocesses (`runner`)."""
