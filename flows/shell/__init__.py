"""The shell: what stands between a person (or cron) and the stages. Argument parsing, exit
codes, logging, the runner that turns every error into one line and its exit code, and the
front ends of the legacy tools. Only the entry points (`cllm`, the legacy tools) import it;
nothing below it does, so the stages stay libraries that any program can call.
"""
