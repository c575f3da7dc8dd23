#!/usr/bin/env bash
# Recipe exploration on a many-core machine: each CPU run pinned to its own 2 cores (as the 2-core
# benchmark machine has), all at once, plus the GPU check. Results under $OUT.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
BUDGET=${BUDGET:-330}
python -m ninshiki data synth detect --out runs/shapes --train 1000 --val 200 > $OUT/synth.log 2>&1
python -m ninshiki data synth detect --out runs/shapes_small --train 192 --val 64 > /dev/null 2>&1
run() {  # name cores model flags...
  local name=$1 cores=$2 model=$3; shift 3
  OMP_NUM_THREADS=2 taskset -c $cores python -m ninshiki detect train --data runs/shapes/coco.yaml --model $model \
    --time-limit $BUDGET --epochs 300 --val-every 1000 --workers 1 --device cpu --out runs/x/$name "$@" \
    > $OUT/$name.log 2>&1
  cp runs/x/$name/metrics.json $OUT/$name.metrics.json 2>/dev/null; cp runs/x/$name/log.csv $OUT/$name.log.csv 2>/dev/null
}
run ssd_adamw_ssd 0,1 ssd_lite --batch-size 16 --lr 3e-3 --augment ssd &
run ssd_adamw_yolo 2,3 ssd_lite --batch-size 16 --lr 3e-3 --augment yolo &
run ssd_adamw_basic 4,5 ssd_lite --batch-size 16 --lr 3e-3 --augment basic &
run frcnn_basic 6,7 faster_rcnn_small --batch-size 8 --lr 2e-3 --augment basic &
run frcnn_yolo 8,9 faster_rcnn_small --batch-size 8 --lr 2e-3 --augment yolo &
run yolo1s_yolo 10,11 yolov1_small --batch-size 16 --lr 1e-3 --augment yolo &
taskset -c 12-15 python benchmarks/device/detect_gpu_check.py --data runs/shapes_small --out runs/gpu > $OUT/gpu.log 2>&1 &
wait
grep -h "map" $OUT/*.log | tail -40
