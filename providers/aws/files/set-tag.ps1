# nestcloud (AWS): a Windows L1 writes its readiness JSON as the $NcTag tag of its own
# instance: IMDSv2 (a session token first) gives its id and region, and New-EC2Tag runs with
# the instance profile's role (`nestcloud iam-policy -p aws --l1-role`: that one tag only).
function Set-NcTag([string]$Value) {
  $tok = Invoke-RestMethod -Method Put -Uri 'http://169.254.169.254/latest/api/token' -Headers @{'X-aws-ec2-metadata-token-ttl-seconds' = '300'}
  $h = @{'X-aws-ec2-metadata-token' = $tok}
  $id = Invoke-RestMethod -Headers $h -Uri 'http://169.254.169.254/latest/meta-data/instance-id'
  $region = Invoke-RestMethod -Headers $h -Uri 'http://169.254.169.254/latest/meta-data/placement/region'
  New-EC2Tag -Region $region -Resource $id -Tag @{Key = $NcTag; Value = $Value}
}
