-- The orders placed on day ds.
SELECT order_id, order_time, customer_id, product_id, quantity, amount
FROM read_csv({{ source(params.source_dir ~ '/orders.csv') }}, header = true, auto_detect = false,
              columns = {'order_id': 'BIGINT', 'order_time': 'TIMESTAMP', 'customer_id': 'BIGINT',
                         'product_id': 'BIGINT', 'quantity': 'INTEGER', 'amount': 'DECIMAL(18,2)'})
WHERE CAST(order_time AS DATE) = DATE '{{ ds }}'
