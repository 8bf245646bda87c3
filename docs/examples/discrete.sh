# A readable prompt for the tour's soft prompt (run tour.sh first): PEZ, then its faithfulness and scrutability.
softscope pez --task sst2 --tokens 5 --steps 20 --fluency-weight 0,0.3 --eval-examples 50 --final-eval subset --out runs/examples/pez
softscope interpret runs/examples/sst2 --examples 60
