# Waywardness in miniature: one target text, γ = 0 and 0.01, 24 steps, 100 test sentences.
softscope wayward --task sst2 --target "Answer the question." --gamma 0,0.01 --steps 24 --max-test 100 --out runs/examples/wayward
