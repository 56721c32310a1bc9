B
y_one_axisJæwÿE