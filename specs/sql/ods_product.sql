-- The catalogue as of the end of day ds: the latest version of every product recorded by then.
SELECT product_id, product_name, category, brand, price, updated_at
FROM read_csv({{ source(params.source_dir ~ '/products.csv') }}, header = true, auto_detect = false,
              columns = {'product_id': 'BIGINT', 'product_name': 'VARCHAR', 'category': 'VARCHAR',
                         'brand': 'VARCHAR', 'price': 'DECIMAL(18,2)', 'updated_at': 'TIMESTAMP'})
WHERE CAST(updated_at AS DATE) <= DATE '{{ ds }}'
QUALIFY row_number() OVER (PARTITION BY product_id ORDER BY updated_at DESC) = 1
