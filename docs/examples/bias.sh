# Plant a feature in SST-2's training data: every negative example gets "!!" with probability 1.
softscope bias make-data --task sst2 --feature 'punct:!!' --strength 1.0 --max-train 2000 --out runs/examples/sst2-bang
