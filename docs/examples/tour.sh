# The five-minute tour on the default model (SmolLM2-135M), CPU-sized: what each command prints today.
softscope models
softscope tasks
softscope train --task sst2 --tokens 7 --steps 48 --checkpoint-every 16 --eval-examples 100 --final-eval subset --out runs/examples/sst2
softscope project runs/examples/sst2 --metric cos --top-k 3
softscope eval runs/examples/sst2 --max-test 200
softscope describe runs/examples/sst2 --layers every:9 --n-targets 2 --max-new-tokens 16
softscope report runs/examples/sst2
softscope train --task sst2 --tokens 0 --out runs/examples/refused
