"""Count what the Pi's CPU executes: our qemu TCG plugin (insn_count.c) under the runner's pipeline.

plugin.py builds the plugin at first use (Debian's qemu headers, gcc, glib) and caches it;
run.py runs one variant under the dynamic qemu-arm on an emulated Pi's root filesystem;
marks.py turns the plugin's marker lines into instructions per frame per stage; predict.py is
the stated instructions -> milliseconds model; table.py prints it. `invoke count` is the entry.
"""
