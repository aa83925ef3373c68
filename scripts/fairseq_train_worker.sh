#!/usr/bin/env bash
exec "${FAIRSEQ_TRAIN:-fairseq-train}" "$@" --distributed-rank "$RANK"
