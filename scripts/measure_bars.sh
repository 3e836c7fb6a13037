#!/usr/bin/env bash
# Re-measure the figures quoted in the README on full UBMEC with the offline teacher (me5_small).
# Each job reuses the cached fine-tuned teacher (run `python train.py` first) and its cached logits.
# Usage: scripts/measure_bars.sh [all|compression|kd|dpq|multi|ner]
# Run dirs: logs/bars/<name>/results.json; summary: python scripts/summarize.py logs/bars
set -euo pipefail
cd "$(dirname "$0")/.."
# ONLY=<regex> keeps just the jobs whose name matches, e.g. ONLY='ensemble|cnn_lstm' scripts/measure_bars.sh kd
job() { local name=$1; shift; [[ -z ${ONLY:-} || $name =~ ^(${ONLY})$ ]] || return 0; echo "== $name: python train.py $*"; /usr/bin/time -f "$name wall %e s" \
  python train.py task_name=bars hydra.run.dir=logs/bars/"$name" logger=csv skip_finished=false "$@" > logs/bars/"$name".log 2>&1 \
  || echo "$name FAILED (see logs/bars/$name.log)"; }
mkdir -p logs/bars
GROUP=${1:-all}
if [[ $GROUP == all || $GROUP == compression ]]; then
  job teacher_fp32
  job quant compression=quant
  job quant_torchao compression=quant compression.quantization.backend=torchao
  job quant_onnx compression=quant_onnx
  job quant_static compression=quant_static
  job prune compression=prune
  job prune_structured_norecovery compression=prune_structured compression.pruning.finetune_epochs=0
  job prune_structured compression=prune_structured
fi
if [[ $GROUP == all || $GROUP == kd ]]; then
  for s in bilstm cnn cnn_lstm ensemble; do  # KD: kl, T=2, alpha=0.5 (the configs' default)
    job "kd_$s" student=$s
    [[ $s == cnn_lstm ]] || job "nokd_$s" student=$s student.kd=false
  done
  job kd_bilstm_mse student=bilstm student.loss.mode=mse student.loss.alpha=1.0
  job kd_teacher_6l student=teacher_6l
fi
if [[ $GROUP == all || $GROUP == dpq ]]; then
  job dpq_cnn student=cnn compression=prune_quant
  job dpq_bilstm student=bilstm compression=prune_quant
fi
if [[ $GROUP == all || $GROUP == multi ]]; then  # stronger teacher signal: multi-teacher KD and augmentation
  job multi_cnn teacher_ensemble=me5_tfidf student=cnn
  job multi_aug_cnn_quant teacher_ensemble=me5_tfidf student=cnn augment=tang2019 compression=quant
fi
if [[ $GROUP == all || $GROUP == ner ]]; then  # sequence labeling: CoNLL-2003 with the me5_small teacher
  # 2 teacher epochs (about 70 min on 2 CPU cores; 3 take about 100); every job shares the cached teacher
  NER="task=ner teacher.epochs=2"
  job ner_teacher $NER
  # the student keeps the teacher's frozen word embeddings (96M of its 107M params): half the CPU time per step
  S6L="student=teacher_6l +student.freeze_word_embeddings=true student.epochs=2"
  job ner_teacher_6l_quant $NER $S6L compression=quant
  job ner_teacher_6l $NER $S6L
  job ner_bilstm_quant $NER student=bilstm compression=quant
fi
