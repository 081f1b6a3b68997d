-- The orders placed on each day from start_ds to end_ds: a range template, so a batch of days reads
-- the file once. Each row says its partition (the day of its order_time).
SELECT order_id, order_time, customer_id, product_id, quantity, amount, CAST(order_time AS DATE) AS ds
FROM read_csv({{ source(params.source_dir ~ '/orders.csv') }}, header = true, auto_detect = false,
              columns = {'order_id': 'BIGINT', 'order_time': 'TIMESTAMP', 'customer_id': 'BIGINT',
                         'product_id': 'BIGINT', 'quantity': 'INTEGER', 'amount': 'DECIMAL(18,2)'})
WHERE CAST(order_time AS DATE) BETWEEN DATE '{{ start_ds }}' AND DATE '{{ end_ds }}'
