#!/usr/bin/env bash
# mpirun with a clean stop on Ctrl-C and SIGTERM. Open MPI 4.1's mpirun does not forward SIGINT/SIGTERM to the ranks
# (it aborts the job), but it forwards SIGUSR1, on which every rank of a MaskBit job stops after the same step with a
# checkpoint and the job exits 130. This script runs mpirun in its own session (so the terminal's Ctrl-C reaches only
# the script) and turns Ctrl-C / SIGTERM into SIGUSR1 to it. Usage: the arguments of mpirun, e.g.
#   scripts/mpirun-clean-stop.sh -np 4 dotnet maskbit.dll train tokenizer --config C --out runs/tok
# MPIRUN names another mpirun than the one on PATH.
setsid "${MPIRUN:-mpirun}" "$@" &
launcher=$!
trap 'kill -USR1 "$launcher" 2> /dev/null' INT TERM
# A trapped signal ends a wait early: wait again while mpirun runs; the last wait returns its exit status.
while kill -0 "$launcher" 2> /dev/null; do wait "$launcher"; done
wait "$launcher"
