function Set-NcTag([string]$Value) {
  $md = @{Metadata = 'true'}
  $c = (Invoke-RestMethod -Headers $md -Uri 'http://169.254.169.254/metadata/instance?api-version=2021-02-01').compute
  $tok = (Invoke-RestMethod -Headers $md -Uri 'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/').access_token
  $vm = "/subscriptions/$($c.subscriptionId)/resourceGroups/$($c.resourceGroupName)/providers/Microsoft.Compute/virtualMachines/$($c.name)"
  $body = @{operation = 'Merge'; properties = @{tags = @{$NcTag = $Value}}} | ConvertTo-Json -Depth 5 -Compress
  Invoke-RestMethod -Method Patch -Uri "https://management.azure.com$vm/providers/Microsoft.Resources/tags/default?api-version=2021-04-01" -Headers @{Authorization = "Bearer $tok"} -ContentType 'application/json' -Body $body | Out-Null
}
